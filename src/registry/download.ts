import { pipeline, Readable } from 'node:stream';
import { CkptError } from '../errors.js';
import { VerifyStream } from '../content/verify.js';
import type { FetchOptions, TransferOptions } from '../content/target.js';
import type { Descriptor } from '../oci/schemas.js';
import { header, type RegistryClient, type Response } from './client.js';
import { isNetworkError, transportError } from './errors.js';
import { retryDelay, sleep } from './retry.js';

/**
 * Blob downloads: `GET /v2/<name>/blobs/<digest>`, redirects to storage followed without
 * credentials, every byte checked against the descriptor as it streams, and a connection that
 * breaks midway resumed with `Range: bytes=N-` instead of starting over.
 */

export interface DownloadSource {
  client: RegistryClient;
  repository: string;
  subject: string;
}

async function open(source: DownloadSource, desc: Descriptor, offset: number, signal?: AbortSignal): Promise<Response> {
  const res = await source.client.send({
    method: 'GET',
    url: `/v2/${source.repository}/blobs/${desc.digest}`,
    scopes: [`repository:${source.repository}:pull`],
    headers: offset > 0 ? { range: `bytes=${offset}-` } : {},
    expect: offset > 0 ? [200, 206] : [200],
    redirect: true,
    signal,
    subject: `${source.subject}@${desc.digest}`,
  });
  if (res.statusCode === 206) {
    const range = /^bytes (\d+)-/.exec(header(res, 'content-range') ?? '');
    if (!range || Number(range[1]) !== offset) {
      await res.body.dump();
      throw new CkptError('REGISTRY_ERROR', `asked for bytes from ${offset}, got ${header(res, 'content-range') ?? 'no range'}`, {
        subject: `${source.subject}@${desc.digest}`,
      });
    }
  }
  return res;
}

/** The blob's bytes in order, reconnecting where a connection breaks. */
async function* resumableBytes(
  source: DownloadSource,
  desc: Descriptor,
  first: Response,
  options: TransferOptions,
): AsyncGenerator<Buffer> {
  const { signal, onProgress } = options;
  const policy = source.client.options.retry;
  let offset = 0;
  let failures = 0;
  let res = first;
  onProgress?.({ mediaType: desc.mediaType, digest: desc.digest, bytes: 0, total: desc.size, state: 'start' });
  try {
    for (;;) {
      // A server that ignored the Range header sends the blob from its start: skip what we have.
      let skip = res.statusCode === 200 ? offset : 0;
      try {
        for await (const raw of res.body as AsyncIterable<Buffer>) {
          let chunk = raw;
          if (skip > 0) {
            const cut = Math.min(skip, chunk.length);
            skip -= cut;
            chunk = chunk.subarray(cut);
            if (chunk.length === 0) continue;
          }
          offset += chunk.length;
          onProgress?.({ mediaType: desc.mediaType, digest: desc.digest, bytes: offset, total: desc.size, state: 'progress' });
          yield chunk;
        }
        onProgress?.({ mediaType: desc.mediaType, digest: desc.digest, bytes: offset, total: desc.size, state: 'done' });
        return;
      } catch (err) {
        // Only a broken connection short of the end is worth resuming; anything else is final.
        if (!isNetworkError(err) || offset >= desc.size || ++failures >= policy.attempts || signal?.aborted) {
          throw transportError(err, `GET blob ${desc.digest}`, source.subject, signal);
        }
      }
      await sleep(retryDelay(failures, policy), signal, source.subject);
      res = await open(source, desc, offset, signal);
    }
  } finally {
    res.body.destroy();
  }
}

/**
 * A readable of the blob that fails with DIGEST_MISMATCH or SIZE_MISMATCH rather than end wrong.
 * The first request is made before it returns, so that a missing blob rejects here.
 */
export async function downloadBlob(source: DownloadSource, desc: Descriptor, options: FetchOptions = {}): Promise<Readable> {
  const first = await open(source, desc, 0, options.signal);
  const verify = new VerifyStream(desc, `${source.subject}@${desc.digest}`, !options.digestCheckedByCaller);
  return pipeline(Readable.from(resumableBytes(source, desc, first, options), { objectMode: false }), verify, () => undefined);
}
