import { pipeline, Readable } from 'node:stream';
import { CkptError, guardErrors } from '../errors.js';
import type { FetchOptions, StorePushOptions, ReadOnlyTarget, TagOptions, Target, TransferOptions } from '../content/target.js';
import { assertSmall, MAX_JSON_BYTES } from '../content/fetch-json.js';
import { checkBytes, VerifyStream } from '../content/verify.js';
import { hasherFor, isDigest, sha256 } from '../oci/digest.js';
import { INDEX_MEDIA_TYPES, isIndexType, isManifestType, MANIFEST_MEDIA_TYPES } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/schemas.js';
import { parseRegistryReference, type RegistryReference } from '../reference.js';
import { header, readBytes, RegistryClient, type Response } from './client.js';
import { downloadBlob } from './download.js';
import { isNetworkError, transportError } from './errors.js';
import type { RegistryOptions } from './options.js';
import { retryDelay, sleep } from './retry.js';
import { blobExists, mountBlob, uploadBlob } from './upload.js';

const ACCEPT = [...MANIFEST_MEDIA_TYPES, ...INDEX_MEDIA_TYPES].join(', ');

function isManifestLike(mediaType: string): boolean {
  return isManifestType(mediaType) || isIndexType(mediaType);
}

/**
 * One repository of a registry (`host[:port]/name`) as a Target: blobs under `/blobs/`, manifests
 * and indexes under `/manifests/`, tags by PUTting a manifest's bytes under the tag. Safe to use
 * from several concurrent transfers; the client (connections, tokens) may be shared by many
 * repositories of one registry.
 */
export class RegistryRepository implements Target {
  readonly client: RegistryClient;
  readonly repository: string;
  /** `host[:port]/name`, for messages. */
  readonly name: string;
  readonly #ownsClient: boolean;

  constructor(client: RegistryClient, repository: string, ownsClient = false) {
    this.client = client;
    this.repository = repository;
    this.name = `${client.registry}/${repository}`;
    this.#ownsClient = ownsClient;
  }

  /**
   * A repository with a client of its own, closed by `close()`: `HOST[:PORT]/NAME` (any tag or
   * digest is ignored) or a parsed reference.
   */
  static open(ref: string | Pick<RegistryReference, 'registry' | 'repository'>, options: RegistryOptions = {}): RegistryRepository {
    const { registry, repository } = typeof ref === 'string' ? parseRegistryReference(ref) : ref;
    return new RegistryRepository(new RegistryClient(registry, options), repository, true);
  }

  get registry(): string {
    return this.client.registry;
  }

  async close(): Promise<void> {
    if (this.#ownsClient) await this.client.close();
  }

  #pull(): string[] {
    return [`repository:${this.repository}:pull`];
  }

  #push(): string[] {
    return [`repository:${this.repository}:pull,push`];
  }

  #subject(desc?: Pick<Descriptor, 'digest'>): string {
    return desc ? `${this.name}@${desc.digest}` : this.name;
  }

  async fetch(desc: Descriptor, options: FetchOptions = {}): Promise<Readable> {
    if (!isManifestLike(desc.mediaType)) {
      return downloadBlob({ client: this.client, repository: this.repository, subject: this.name }, desc, options);
    }
    const { bytes } = await this.#getManifest(desc.digest, desc.mediaType, options.signal);
    return pipeline(Readable.from([bytes]), new VerifyStream(desc, this.#subject(desc)), () => undefined);
  }

  async exists(desc: Descriptor, options: TransferOptions = {}): Promise<boolean> {
    if (!isManifestLike(desc.mediaType)) {
      return (await blobExists({ client: this.client, repository: this.repository, subject: this.name }, desc.digest, options.signal)) !== undefined;
    }
    const res = await this.client.send({
      method: 'HEAD',
      url: `/v2/${this.repository}/manifests/${desc.digest}`,
      scopes: this.#pull(),
      headers: { accept: `${desc.mediaType}, ${ACCEPT}` },
      // Manifests too may be served from elsewhere (registry.k8s.io redirects to Artifact Registry).
      redirect: true,
      expect: [200, 404],
      signal: options.signal,
      subject: this.#subject(desc),
    });
    await res.body.dump();
    return res.statusCode === 200;
  }

  /**
   * Pushes content whose descriptor is known. A blob the repository already has is not sent again
   * (its stream is destroyed unread); a manifest is PUT under its digest.
   */
  async push(desc: Descriptor, content: Readable, options: StorePushOptions = {}): Promise<void> {
    if (isManifestLike(desc.mediaType)) {
      const bytes = await readVerified(content, desc, this.#subject(desc));
      await this.pushManifest(desc, bytes, desc.digest, options);
      return;
    }
    const target = { client: this.client, repository: this.repository, subject: this.#subject(desc) };
    // Read only after the HEAD: an abort may come first.
    guardErrors(content);
    if (!options.knownMissing && (await blobExists(target, desc.digest, options.signal))) {
      content.destroy();
      options.onProgress?.({ mediaType: desc.mediaType, digest: desc.digest, bytes: desc.size, total: desc.size, state: 'skipped' });
      return;
    }
    await uploadBlob(target, desc.mediaType, content, { digest: desc.digest, size: desc.size }, options);
  }

  /** Uploads content of unknown digest (a layer compressed on the fly) in chunks; returns its descriptor. */
  async ingest(mediaType: string, content: Readable, options: TransferOptions = {}): Promise<Descriptor> {
    if (isManifestLike(mediaType)) {
      const bytes = await readManifest(content, this.name);
      const desc: Descriptor = { mediaType, digest: sha256(bytes), size: bytes.length };
      await this.pushManifest(desc, bytes, desc.digest, options);
      return desc;
    }
    const target = { client: this.client, repository: this.repository, subject: this.name };
    const { digest, size } = await uploadBlob(target, mediaType, content, undefined, options);
    return { mediaType, digest, size };
  }

  /**
   * Mounts a blob from another repository of the same registry. `from` is a repository name or a
   * RegistryRepository; false when the registry declined (the caller uploads instead) or `from` is
   * elsewhere.
   */
  async mount(desc: Descriptor, from: ReadOnlyTarget | string, options: TransferOptions = {}): Promise<boolean> {
    if (isManifestLike(desc.mediaType)) return false;
    let fromRepository: string;
    if (typeof from === 'string') fromRepository = from;
    else if (from instanceof RegistryRepository && from.registry === this.registry) fromRepository = from.repository;
    else return false;
    const target = { client: this.client, repository: this.repository, subject: this.#subject(desc) };
    const mounted = await mountBlob(target, desc.digest, fromRepository, options.signal);
    if (mounted) {
      options.onProgress?.({ mediaType: desc.mediaType, digest: desc.digest, bytes: desc.size, total: desc.size, state: 'mounted' });
    }
    return mounted;
  }

  /** The descriptor a tag or digest points to: HEAD where the registry says enough, else GET and hash. */
  async resolve(reference: string, options: TransferOptions = {}): Promise<Descriptor> {
    const subject = `${this.name}${isDigest(reference) ? '@' : ':'}${reference}`;
    const head = await this.client.send({
      method: 'HEAD',
      url: `/v2/${this.repository}/manifests/${reference}`,
      scopes: this.#pull(),
      headers: { accept: ACCEPT },
      redirect: true,
      expect: [200],
      signal: options.signal,
      subject,
    });
    await head.body.dump();
    const digest = header(head, 'docker-content-digest');
    const mediaType = contentType(head);
    const size = Number(header(head, 'content-length'));
    if (digest && isDigest(digest) && mediaType && isManifestLike(mediaType) && Number.isSafeInteger(size)) {
      if (isDigest(reference) && digest !== reference) {
        throw new CkptError('DIGEST_MISMATCH', `the registry answered with ${digest}`, { subject });
      }
      return { mediaType, digest, size };
    }
    // Not enough in the headers: read the manifest and compute what the registry did not say.
    return (await this.fetchReference(reference, options)).desc;
  }

  /**
   * One GET of the manifest under a tag or digest. Its digest is computed from the bytes: a digest
   * reference must match it, and so must the `Docker-Content-Digest` the registry sends.
   */
  async fetchReference(reference: string, options: TransferOptions = {}): Promise<{ desc: Descriptor; bytes: Buffer }> {
    const subject = `${this.name}${isDigest(reference) ? '@' : ':'}${reference}`;
    const { res, bytes } = await this.#getManifest(reference, undefined, options.signal);
    const computed = isDigest(reference)
      ? `${reference.split(':')[0]}:${hasherFor(reference).update(bytes).digest('hex')}`
      : sha256(bytes);
    const stated = header(res, 'docker-content-digest');
    const expected = isDigest(reference) ? reference : stated?.startsWith('sha256:') ? stated : undefined;
    if (expected !== undefined && computed !== expected) {
      throw new CkptError('DIGEST_MISMATCH', `content has digest ${computed}, not ${expected}`, { subject });
    }
    return { desc: { mediaType: contentType(res) ?? bodyMediaType(bytes, subject), digest: computed, size: bytes.length }, bytes };
  }

  /** Points `tag` at a manifest by PUTting its bytes under the tag: those given, or else read from the repository. */
  async tag(desc: Descriptor, tag: string, options: TagOptions = {}): Promise<void> {
    if (!isManifestLike(desc.mediaType)) {
      throw new CkptError('UNSUPPORTED', `cannot tag ${desc.mediaType}: only manifests and indexes`, { subject: this.#subject(desc) });
    }
    const { bytes } = options;
    // The caller's bytes must be the manifest the tag is meant for; fetched ones are checked as read.
    if (bytes) checkBytes(bytes, desc, `${this.name}:${tag}`);
    const manifest = bytes ?? (await readVerified(await this.fetch(desc, options), desc, this.#subject(desc)));
    await this.pushManifest(desc, manifest, tag, options);
  }

  /** PUTs manifest bytes under `reference` (a tag or its digest): push and tag in one request. */
  async pushManifest(desc: Descriptor, bytes: Buffer, reference: string, options: TransferOptions = {}): Promise<void> {
    const subject = `${this.name}${isDigest(reference) ? '@' : ':'}${reference}`;
    assertSmall(desc, subject);
    options.onProgress?.({ mediaType: desc.mediaType, digest: desc.digest, bytes: 0, total: desc.size, state: 'start' });
    const res = await this.client.send({
      method: 'PUT',
      url: `/v2/${this.repository}/manifests/${reference}`,
      scopes: this.#push(),
      headers: { 'content-type': desc.mediaType, 'content-length': String(bytes.length) },
      body: bytes,
      expect: [201, 200, 204],
      signal: options.signal,
      subject,
    });
    await res.body.dump();
    const stored = header(res, 'docker-content-digest');
    if (stored && stored !== desc.digest) {
      throw new CkptError('DIGEST_MISMATCH', `the registry stored the manifest as ${stored}, not ${desc.digest}`, { subject });
    }
    options.onProgress?.({ mediaType: desc.mediaType, digest: desc.digest, bytes: desc.size, total: desc.size, state: 'done' });
  }

  /** Deletes a manifest by digest (the registry must allow deletion). */
  async delete(desc: Descriptor, options: TransferOptions = {}): Promise<void> {
    const kind = isManifestLike(desc.mediaType) ? 'manifests' : 'blobs';
    const res = await this.client.send({
      method: 'DELETE',
      url: `/v2/${this.repository}/${kind}/${desc.digest}`,
      scopes: [`repository:${this.repository}:delete`],
      expect: [202, 200, 204],
      signal: options.signal,
      subject: this.#subject(desc),
    });
    await res.body.dump();
  }

  /**
   * GETs a manifest and reads it whole. A connection cut in the middle of the body is retried as
   * one cut before the answer is: a manifest is small, and read again from its start.
   */
  async #getManifest(reference: string, mediaType: string | undefined, signal?: AbortSignal): Promise<{ res: Response; bytes: Buffer }> {
    const subject = `${this.name}${isDigest(reference) ? '@' : ':'}${reference}`;
    const url = `/v2/${this.repository}/manifests/${reference}`;
    const policy = this.client.options.retry;
    for (let attempt = 1; ; attempt++) {
      const res = await this.client.send({
        method: 'GET',
        url,
        scopes: this.#pull(),
        headers: { accept: mediaType ? `${mediaType}, ${ACCEPT}` : ACCEPT },
        redirect: true,
        expect: [200],
        signal,
        subject,
      });
      try {
        return { res, bytes: await readManifest(res.body, subject) };
      } catch (err) {
        if (err instanceof CkptError || !isNetworkError(err) || attempt >= policy.attempts || signal?.aborted) {
          throw transportError(err, `GET ${url}`, subject, signal);
        }
        await sleep(retryDelay(attempt, policy), signal, subject);
      }
    }
  }
}

function contentType(res: Response): string | undefined {
  return header(res, 'content-type')?.split(';')[0]?.trim() || undefined;
}

function bodyMediaType(bytes: Buffer, subject: string): string {
  try {
    const value: unknown = JSON.parse(bytes.toString('utf8'));
    if (typeof value === 'object' && value !== null && 'mediaType' in value && typeof value.mediaType === 'string') return value.mediaType;
  } catch {
    // fall through
  }
  throw new CkptError('INVALID_MANIFEST', 'the registry did not say the media type of the manifest', { subject });
}

/** Reads a manifest of unknown size whole, refusing one larger than any ckpt reads (as `assertSmall` does). */
async function readManifest(body: Readable, subject: string): Promise<Buffer> {
  const bytes = await readBytes(body, MAX_JSON_BYTES + 1, false, subject);
  if (bytes.length > MAX_JSON_BYTES) throw new CkptError('INVALID_MANIFEST', `manifest larger than ${MAX_JSON_BYTES} bytes`, { subject });
  return bytes;
}

/** Reads a small stream whole, checked against its descriptor. */
async function readVerified(content: Readable, desc: Descriptor, subject: string): Promise<Buffer> {
  // Too large to read: not read at all.
  if (desc.size > MAX_JSON_BYTES) content.destroy();
  assertSmall(desc, subject);
  const parts: Buffer[] = [];
  for await (const chunk of pipeline(content, new VerifyStream(desc, subject), () => undefined) as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts);
}
