import { pipeline, Readable, type Transform } from 'node:stream';
import { CkptError, isCkptError } from '../errors.js';
import { DigestStream, HashedReadable, VerifyStream } from '../content/verify.js';
import type { TransferOptions } from '../content/target.js';
import { ChunkReader } from './chunks.js';
import { header, type RegistryClient, type Response, statusError } from './client.js';
import { isNetworkError } from './errors.js';
import { parseRetryAfter, retryDelay, sleep } from './retry.js';

/**
 * Blob uploads (distribution spec, "pushing blobs"): `POST /v2/<name>/blobs/uploads/` opens a
 * session whose `Location` (relative or absolute, carrying state in its query) changes with every
 * answer; the bytes go in `PATCH` chunks, or in the closing `PUT <Location>&digest=` when they fit
 * in one chunk. A chunk stays in memory until the registry acknowledges it, so that after a broken
 * connection the upload resumes from the offset the registry reports (`GET <Location>`). A
 * registry that refuses chunks gets each blob in one streamed PATCH instead (RegistryClient.chunkedUploads).
 */

export interface UploadTarget {
  client: RegistryClient;
  /** Repository name (`team/app`). */
  repository: string;
  /** For messages: `host/repo`. */
  subject: string;
}

interface Session {
  location: URL;
  /** `OCI-Chunk-Min-Length`: the registry's smallest acceptable chunk but the last. */
  minChunk: number;
}

/** Answers of a PATCH or PUT that mean "try again", which the upload handles itself. */
const RETRY_STATUSES = [408, 429, 500, 502, 503, 504];

/** A PATCH taken: 202, or 204 from Pulp (Red Hat Satellite), as containers/image takes any 2xx. */
const PATCH_TAKEN = [202, 204];

/**
 * Answers to a chunk that mean the registry does not take chunks, not that the blob or the
 * credentials are wrong: GHCR's 416 for a body over 4 MiB with Content-Range, 413 from a proxy's
 * body limit, 400/404/405/501 from a registry that takes one PATCH per session (Artifact Registry).
 */
const CHUNK_REFUSALS = [400, 404, 405, 411, 413, 416, 501];

function pushScope(repository: string): string {
  return `repository:${repository}:pull,push`;
}

/** `Location` resolved against the request it answered. */
function nextLocation(res: Response, current: URL): URL {
  const location = header(res, 'location');
  return location ? new URL(location, current) : current;
}

/** Adds a query parameter without re-encoding the state the registry put in the query. */
export function withQuery(url: URL, key: string, value: string): URL {
  const href = url.href.replace(/#.*$/, '');
  return new URL(`${href}${url.search ? '&' : '?'}${key}=${encodeURIComponent(value)}`);
}

/** The offset after the last byte a `Range: 0-N` header acknowledges; 0 without one. */
function rangeOffset(res: Response): number | undefined {
  const range = header(res, 'range');
  if (range === undefined) return undefined;
  const m = /^(?:bytes=)?0-(\d+)$/.exec(range.trim());
  if (!m) return undefined;
  const last = Number(m[1]);
  // distribution answers "0-0" for an empty upload too; a 1-byte session cannot happen with our chunks.
  return last === 0 ? 0 : last + 1;
}

/** A `Location` answering the POST to `.../blobs/uploads/`, resolved against that URL (RFC 3986). */
async function uploadsUrl(target: UploadTarget, location: string): Promise<URL> {
  return new URL(location, new URL(`/v2/${target.repository}/blobs/uploads/`, await target.client.baseUrl()));
}

async function startSession(target: UploadTarget, signal?: AbortSignal): Promise<Session> {
  const res = await target.client.send({
    method: 'POST',
    url: `/v2/${target.repository}/blobs/uploads/`,
    scopes: [pushScope(target.repository)],
    headers: { 'content-length': '0' },
    expect: [202],
    signal,
    subject: target.subject,
  });
  await res.body.dump();
  const location = header(res, 'location');
  if (!location) throw new CkptError('REGISTRY_ERROR', 'upload started without a Location', { subject: target.subject });
  const minChunk = Number(header(res, 'oci-chunk-min-length') ?? 0);
  return { location: await uploadsUrl(target, location), minChunk: Number.isFinite(minChunk) ? minChunk : 0 };
}

/** Abandons a session; best effort, the registry expires it anyway. */
async function cancelSession(target: UploadTarget, session: Session): Promise<void> {
  try {
    const res = await target.client.send({
      method: 'DELETE',
      url: session.location,
      scopes: [pushScope(target.repository)],
      expect: [202, 204, 404],
      retry: false,
      signal: AbortSignal.timeout(5_000),
      subject: target.subject,
    });
    await res.body.dump();
  } catch {
    // The session is garbage either way.
  }
}

/** How many bytes the registry holds for the session, from `GET <Location>`. */
async function sessionOffset(target: UploadTarget, session: Session, signal?: AbortSignal): Promise<number> {
  const res = await target.client.send({
    method: 'GET',
    url: session.location,
    scopes: [pushScope(target.repository)],
    expect: [204],
    signal,
    subject: target.subject,
  });
  await res.body.dump();
  session.location = nextLocation(res, session.location);
  return rangeOffset(res) ?? 0;
}

/** A failure after which the same bytes may be sent again: a broken connection or a retryable status. */
class RetryableUploadError extends Error {
  constructor(
    readonly status: number | undefined,
    readonly retryAfterMs?: number,
  ) {
    super(status ? `HTTP ${status}` : 'connection broken');
  }
}

function asRetryable(err: unknown): RetryableUploadError | undefined {
  if (err instanceof RetryableUploadError) return err;
  return isNetworkError(err) ? new RetryableUploadError(undefined) : undefined;
}

async function expectOrRetry(res: Response, ok: readonly number[]): Promise<void> {
  if (ok.includes(res.statusCode)) return;
  await res.body.dump();
  throw new RetryableUploadError(res.statusCode, parseRetryAfter(res.headers['retry-after']));
}

/** A chunk the registry refused as a chunk (CHUNK_REFUSALS); `error` is what to report if nothing else is tried. */
class ChunkRefused extends Error {
  constructor(readonly error: CkptError) {
    super(error.message);
  }
}

/**
 * Sends `chunk`, which starts at `start` in the blob, resuming after failures from what the
 * registry reports. Where the registry lost the session (distribution 2.8 cancels one that a
 * broken request left at an unexpected offset), only an upload still in its first chunk can start over.
 */
async function sendChunk(target: UploadTarget, session: Session, chunk: Buffer, start: number, signal?: AbortSignal): Promise<void> {
  const policy = target.client.options.retry;
  let sent = 0;
  for (let attempt = 1; sent < chunk.length; attempt++) {
    try {
      const body = chunk.subarray(sent);
      const res = await target.client.send({
        method: 'PATCH',
        url: session.location,
        scopes: [pushScope(target.repository)],
        headers: {
          'content-type': 'application/octet-stream',
          'content-range': `${start + sent}-${start + chunk.length - 1}`,
          'content-length': String(body.length),
        },
        body,
        expect: [...PATCH_TAKEN, ...RETRY_STATUSES, ...CHUNK_REFUSALS],
        retry: false,
        signal,
        subject: target.subject,
      });
      if (CHUNK_REFUSALS.includes(res.statusCode)) {
        throw new ChunkRefused(await statusError(res, 'PATCH', session.location, target.subject));
      }
      await expectOrRetry(res, PATCH_TAKEN);
      await res.body.dump();
      session.location = nextLocation(res, session.location);
      const acknowledged = rangeOffset(res);
      // A registry may take part of a chunk; the rest goes in the next PATCH.
      sent = acknowledged !== undefined && acknowledged > start + sent && acknowledged < start + chunk.length ? acknowledged - start : chunk.length;
      attempt = 0;
    } catch (err) {
      const retryable = asRetryable(err);
      if (!retryable || attempt >= policy.attempts || signal?.aborted) throw unwrap(err, target);
      await sleep(retryDelay(attempt, policy, retryable.retryAfterMs), signal, target.subject);
      sent = await resumeOffset(target, session, start, chunk.length, signal);
    }
  }
}

/** Where to go on after a failed chunk: the registry's offset, or 0 in a fresh session. */
async function resumeOffset(target: UploadTarget, session: Session, start: number, length: number, signal?: AbortSignal): Promise<number> {
  let offset: number;
  try {
    offset = await sessionOffset(target, session, signal);
  } catch (err) {
    // Unreachable or aborted: nothing more to learn. Otherwise the registry refused or forgot the
    // session (distribution 2.8 cancels one left at an unexpected offset by a broken request).
    if (!(err instanceof CkptError) || err.code === 'ABORTED' || err.code === 'NETWORK') throw err;
    if (start !== 0) {
      throw new CkptError('NETWORK', 'the registry cannot resume the upload after a broken connection; push again', {
        subject: target.subject,
        cause: err,
      });
    }
    const fresh = await startSession(target, signal);
    session.location = fresh.location;
    return 0;
  }
  if (offset < start || offset > start + length) {
    throw new CkptError('NETWORK', `the registry reports ${offset} bytes of the upload, outside the chunk at ${start}; push again`, {
      subject: target.subject,
    });
  }
  return offset - start;
}

function unwrap(err: unknown, target: UploadTarget): unknown {
  if (err instanceof RetryableUploadError) {
    return new CkptError('REGISTRY_ERROR', `upload failed with ${err.message} after retries`, { subject: target.subject });
  }
  return err;
}

/** `PUT <Location>&digest=`, with the last bytes as its body; a lost answer is checked with HEAD. */
async function commit(target: UploadTarget, session: Session, digest: string, body: Buffer, signal?: AbortSignal): Promise<void> {
  const res = await target.client.send({
    method: 'PUT',
    url: withQuery(session.location, 'digest', digest),
    scopes: [pushScope(target.repository)],
    headers: { 'content-type': 'application/octet-stream', 'content-length': String(body.length) },
    body,
    expect: [201, 204, ...RETRY_STATUSES],
    retry: false,
    signal,
    subject: target.subject,
  });
  if (res.statusCode === 204) {
    await res.body.dump();
    return;
  }
  await expectOrRetry(res, [201]);
  await res.body.dump();
  const stored = header(res, 'docker-content-digest');
  if (stored && stored !== digest) {
    throw new CkptError('DIGEST_MISMATCH', `the registry stored ${stored} for ${digest}`, { subject: target.subject });
  }
}

export async function blobExists(target: UploadTarget, digest: string, signal?: AbortSignal): Promise<{ size: number } | undefined> {
  const res = await target.client.send({
    method: 'HEAD',
    url: `/v2/${target.repository}/blobs/${digest}`,
    scopes: [`repository:${target.repository}:pull`],
    // A redirect to storage already says the blob exists; storage may refuse a HEAD signed for GET.
    expect: [200, 404, 302, 303, 307],
    signal,
    subject: target.subject,
  });
  await res.body.dump();
  if (res.statusCode === 404) return undefined;
  return { size: Number(header(res, 'content-length') ?? -1) };
}

export interface UploadResult {
  digest: string;
  size: number;
}

/**
 * Uploads a stream. With `expected`, the bytes are checked against it as they go and a mismatch
 * fails the upload before the registry commits anything; without, the digest is computed on the way.
 */
export async function uploadBlob(
  target: UploadTarget,
  mediaType: string,
  content: Readable,
  expected: UploadResult | undefined,
  options: TransferOptions = {},
): Promise<UploadResult> {
  const { signal, onProgress } = options;
  // Content its producer hashed already is not hashed again.
  const meter: Transform | undefined = expected
    ? new VerifyStream(expected, target.subject)
    : content instanceof HashedReadable
      ? undefined
      : new DigestStream();
  const source = meter ? pipeline(content, meter, () => undefined) : content;
  const reader = new ChunkReader(source);
  const onAbort = (): void => reader.destroy(new CkptError('ABORTED', 'upload aborted', { subject: target.subject }));
  signal?.addEventListener('abort', onAbort, { once: true });
  const { client } = target;
  let session: Session | undefined;
  try {
    session = await startSession(target, signal);
    const chunkSize = Math.max(client.options.chunkSize, session.minChunk);
    const report = (bytes: number) => onProgress?.({ mediaType, digest: expected?.digest, bytes, total: expected?.size, state: 'progress' });
    onProgress?.({ mediaType, digest: expected?.digest, bytes: 0, total: expected?.size, state: 'start' });
    let offset = 0;
    let chunk = await reader.read(chunkSize);
    /** Where chunks were refused: the blob's first bytes, still held, and the read of those after them. */
    let restart: { held: Buffer[]; next: Promise<Buffer> | undefined } | undefined;
    let previous: Buffer | undefined;
    /** Every byte sent so far, while still held: the first chunk's buffer is reused by the read after the second's. */
    const fromStart = (readAhead: boolean): Buffer[] | undefined =>
      offset === 0 ? [chunk] : offset === chunkSize && previous && !readAhead ? [previous, chunk] : undefined;
    // Chunked only when the blob is larger than one chunk; otherwise one PUT carries it all.
    while (chunk.length === chunkSize && !reader.done) {
      // Another upload of this client found chunks refused: this one starts over as a stream too, if it can.
      const held = client.chunkedUploads === 'refused' ? fromStart(false) : undefined;
      if (held) {
        restart = { held, next: undefined };
        break;
      }
      // Read the next chunk while this one is on the wire: compression and network overlap. Not
      // while a registry not yet known to take chunks has the second: the read would overwrite
      // the first, which a registry that refuses it must get again.
      const probing = offset === chunkSize && client.chunkedUploads === 'untried';
      const next = probing ? undefined : reader.read(chunkSize);
      next?.catch(() => undefined);
      try {
        await sendChunk(target, session, chunk, offset, signal);
      } catch (err) {
        if (!(err instanceof ChunkRefused)) throw err;
        const whole = fromStart(next !== undefined);
        if (!whole) throw err.error;
        restart = { held: whole, next };
        break;
      }
      if (offset > 0) client.chunkedUploads = 'accepted';
      previous = chunk;
      offset += chunk.length;
      report(offset);
      chunk = await (next ?? reader.read(chunkSize));
    }
    if (restart) {
      client.chunkedUploads = 'refused';
      await cancelSession(target, session);
      session = await startSession(target, signal);
      offset = await streamBlob(target, session, restart.held, restart.next, reader, report, signal);
      chunk = Buffer.alloc(0);
    }
    const digest = expected?.digest ?? (meter instanceof DigestStream ? meter : (content as HashedReadable)).digest;
    const size = offset + chunk.length;
    await commitWithRetry(target, session, digest, chunk, offset, signal);
    onProgress?.({ mediaType, digest, bytes: size, total: size, state: 'done' });
    return { digest, size };
  } catch (err) {
    reader.destroy();
    if (session) await cancelSession(target, session);
    throw err;
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}

/**
 * Sends a whole blob in one PATCH without Content-Range, as docker and containers/image do: the
 * bytes `held` from its start, then the rest of the stream as it comes. Nothing of it is kept to
 * send again: a broken connection fails the upload. Returns the bytes sent.
 */
async function streamBlob(
  target: UploadTarget,
  session: Session,
  held: Buffer[],
  next: Promise<Buffer> | undefined,
  reader: ChunkReader,
  report: (bytes: number) => void,
  signal?: AbortSignal,
): Promise<number> {
  let sent = 0;
  /** A failure of the blob's own source, reported as itself rather than as the request it broke. */
  let failed: { error: unknown } | undefined;
  async function* pieces(): AsyncGenerator<Buffer> {
    try {
      for (const piece of next ? [...held, await next] : held) {
        yield piece;
        report((sent += piece.length));
      }
      for await (const piece of reader.rest()) {
        yield piece;
        report((sent += piece.length));
      }
    } catch (error) {
      failed = { error };
      throw error;
    }
  }
  const res = await target.client.send({
    method: 'PATCH',
    url: session.location,
    scopes: [pushScope(target.repository)],
    headers: { 'content-type': 'application/octet-stream' },
    body: Readable.from(pieces(), { objectMode: false }),
    expect: PATCH_TAKEN,
    signal,
    subject: target.subject,
  }).catch((err: unknown) => {
    throw failed ? failed.error : err;
  });
  await res.body.dump();
  session.location = nextLocation(res, session.location);
  return sent;
}

/**
 * The closing PUT, retried. When it carries the whole blob (offset 0) a lost session is simply
 * started again; otherwise the registry must still hold what the PATCHes sent.
 */
async function commitWithRetry(
  target: UploadTarget,
  session: Session,
  digest: string,
  last: Buffer,
  offset: number,
  signal?: AbortSignal,
): Promise<void> {
  const policy = target.client.options.retry;
  let body = last;
  for (let attempt = 1; ; attempt++) {
    try {
      await commit(target, session, digest, body, signal);
      return;
    } catch (err) {
      const retryable = asRetryable(err);
      if (!retryable || attempt >= policy.attempts || signal?.aborted) {
        // The answer to an earlier attempt may have been lost after the blob was stored.
        if (attempt > 1 && (await blobExists(target, digest, signal).catch(() => undefined))) return;
        throw unwrap(err, target);
      }
      await sleep(retryDelay(attempt, policy, retryable.retryAfterMs), signal, target.subject);
      if (await blobExists(target, digest, signal).catch(() => undefined)) return;
      const sent = await resumeOffset(target, session, offset, last.length, signal);
      body = last.subarray(sent);
    }
  }
}

/**
 * Cross-repository mount: `POST .../uploads/?mount=<digest>&from=<repo>`. 201 means mounted; 202
 * means the registry opened an upload instead, which is abandoned: the caller pushes. So does a
 * refusal (no pull right on the other repository, a registry without mounts): the upload that
 * follows reports what is really wrong, if anything is.
 */
export async function mountBlob(target: UploadTarget, digest: string, from: string, signal?: AbortSignal): Promise<boolean> {
  const query = new URLSearchParams({ mount: digest, from });
  let res: Response;
  try {
    res = await target.client.send({
      method: 'POST',
      url: `/v2/${target.repository}/blobs/uploads/?${query.toString()}`,
      scopes: [pushScope(target.repository), `repository:${from}:pull`],
      headers: { 'content-length': '0' },
      expect: [201, 202],
      signal,
      subject: target.subject,
    });
  } catch (err) {
    if (isCkptError(err, 'ABORTED') || isCkptError(err, 'NETWORK')) throw err;
    return false;
  }
  await res.body.dump();
  if (res.statusCode === 201) return true;
  const location = header(res, 'location');
  if (location) await cancelSession(target, { location: await uploadsUrl(target, location), minChunk: 0 });
  return false;
}
