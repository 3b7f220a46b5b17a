import diagnostics from 'node:diagnostics_channel';
import { execa } from 'execa';
import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { isCkptError } from '../../src/errors.js';
import { sha256 } from '../../src/oci/digest.js';
import { RegistryClient } from '../../src/registry/client.js';
import { RegistryRepository } from '../../src/registry/repository.js';
import type { ProgressEvent } from '../../src/content/target.js';
import { blob, collect, manifestOf, trickle } from '../helpers/blobs.js';
import { startRegistry, type RegistryServer } from '../helpers/registry.js';

const CHUNK = 64 * 1024;

describe('RegistryRepository against docker-registry without auth', () => {
  let registry: RegistryServer;
  let client: RegistryClient;
  const repo = (name: string): RegistryRepository => new RegistryRepository(client, name);

  beforeAll(async () => {
    registry = await startRegistry();
    client = new RegistryClient(registry.host, { plainHttp: true, chunkSize: CHUNK });
  });
  afterAll(async () => {
    await client.close();
    await registry.stop();
  });

  it('pushes a blob of known digest and fetches it back verified', async () => {
    const r = repo('known/blob');
    const { bytes, desc } = blob(10_000);
    expect(await r.exists(desc)).toBe(false);
    await r.push(desc, Readable.from([bytes]));
    expect(await r.exists(desc)).toBe(true);
    expect((await collect(await r.fetch(desc))).equals(bytes)).toBe(true);
    expect(r.name).toBe(`${registry.host}/known/blob`);
  });

  it('pushes a known-digest blob larger than a chunk in PATCH chunks', async () => {
    const r = repo('known/large');
    const { bytes, desc } = blob(CHUNK * 3 + 123);
    const events: ProgressEvent[] = [];
    await r.push(desc, trickle(bytes, 10_000), { onProgress: (e) => events.push(e) });
    expect((await collect(await r.fetch(desc))).equals(bytes)).toBe(true);
    expect(events.filter((e) => e.state === 'progress').length).toBe(3);
    expect(events.at(-1)).toMatchObject({ state: 'done', bytes: desc.size });
  });

  it('ingests a stream of unknown digest in several chunks and returns its descriptor', async () => {
    const r = repo('ingest/chunks');
    const { bytes, desc } = blob(CHUNK * 4 + 1);
    const got = await r.ingest(desc.mediaType, trickle(bytes, 7_000));
    expect(got).toEqual(desc);
    expect((await collect(await r.fetch(got))).equals(bytes)).toBe(true);
  });

  it('sends a sequence of requests over one connection', async () => {
    // Its own pool, so that only these requests count.
    const own = new RegistryClient(registry.host, { plainHttp: true, chunkSize: CHUNK });
    let connections = 0;
    const count = () => connections++;
    diagnostics.subscribe('undici:client:connected', count);
    try {
      const r = new RegistryRepository(own, 'one/connection');
      const { bytes, desc } = blob(CHUNK * 4 + 1);
      // POST, four PATCHes, PUT, then GET: each request follows the answer to the one before.
      await r.ingest(desc.mediaType, Readable.from([bytes]));
      expect((await collect(await r.fetch(desc))).equals(bytes)).toBe(true);
      expect(connections).toBe(1);
    } finally {
      diagnostics.unsubscribe('undici:client:connected', count);
      await own.close();
    }
  });

  it('ingests exact multiples of the chunk size and empty streams', async () => {
    const r = repo('ingest/edges');
    for (const size of [0, CHUNK, CHUNK * 2]) {
      const { bytes, desc } = blob(size);
      expect(await r.ingest(desc.mediaType, trickle(bytes, 5_000))).toEqual(desc);
      expect((await collect(await r.fetch(desc))).equals(bytes)).toBe(true);
    }
  });

  it('fails a push whose bytes do not match the descriptor, leaving nothing', async () => {
    const r = repo('known/mismatch');
    const { desc } = blob(CHUNK * 2);
    const other = blob(CHUNK * 2).bytes;
    await expect(r.push(desc, Readable.from([other]))).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    expect(await r.exists(desc)).toBe(false);
  });

  it('skips a blob the repository already has without reading the stream', async () => {
    const r = repo('skip/existing');
    const { bytes, desc } = blob(5_000);
    await r.push(desc, Readable.from([bytes]));
    const events: ProgressEvent[] = [];
    let read = false;
    const stream = new Readable({
      read() {
        read = true;
        this.push(null);
      },
    });
    await r.push(desc, stream, { onProgress: (e) => events.push(e) });
    expect(read).toBe(false);
    expect(events).toEqual([expect.objectContaining({ state: 'skipped' })]);
  });

  it('mounts a blob from another repository and declines when the source lacks it', async () => {
    const from = repo('mount/source');
    const to = repo('mount/dest');
    const { bytes, desc } = blob(3_000);
    await from.push(desc, Readable.from([bytes]));
    expect(await to.mount(desc, from)).toBe(true);
    expect(await to.exists(desc)).toBe(true);
    const missing = blob(100).desc;
    expect(await to.mount(missing, 'mount/source')).toBe(false);
    expect(await to.exists(missing)).toBe(false);
  });

  it('pushes a manifest, resolves, tags and fetches it', async () => {
    const r = repo('manifests/app');
    const config = blob(200, 'application/vnd.oci.image.config.v1+json');
    const layer = blob(1_000);
    await r.push(config.desc, Readable.from([config.bytes]));
    await r.push(layer.desc, Readable.from([layer.bytes]));
    const manifest = manifestOf(config.desc, [layer.desc], { 'org.example': 'x' });
    await r.push(manifest.desc, Readable.from([manifest.bytes]));
    expect(await r.exists(manifest.desc)).toBe(true);
    expect(await r.resolve(manifest.desc.digest)).toEqual(manifest.desc);
    await r.tag(manifest.desc, 'v1');
    expect(await r.resolve('v1')).toEqual(manifest.desc);
    expect((await collect(await r.fetch(manifest.desc))).equals(manifest.bytes)).toBe(true);
    await r.pushManifest(manifest.desc, manifest.bytes, 'v2');
    expect(await r.resolve('v2')).toEqual(manifest.desc);
  });

  it('refuses a manifest whose blobs are missing', async () => {
    const r = repo('manifests/broken');
    const manifest = manifestOf(blob(10).desc, [blob(10).desc]);
    const err: unknown = await r.push(manifest.desc, Readable.from([manifest.bytes])).catch((e: unknown) => e);
    expect(isCkptError(err)).toBe(true);
    expect(await r.exists(manifest.desc)).toBe(false);
  });

  it('refuses to push a manifest over 4 MiB with INVALID_MANIFEST, sending nothing', async () => {
    const r = repo('manifests/huge');
    const manifest = manifestOf(blob(10).desc, [], { pad: 'x'.repeat(4 << 20) });
    await expect(r.push(manifest.desc, Readable.from([manifest.bytes]))).rejects.toMatchObject({ code: 'INVALID_MANIFEST' });
    await expect(r.tag(manifest.desc, 'v1', { bytes: manifest.bytes })).rejects.toMatchObject({ code: 'INVALID_MANIFEST' });
    expect(await r.exists(manifest.desc)).toBe(false);
  });

  it('reports NOT_FOUND for unknown repositories, tags and blobs', async () => {
    const r = repo('nothing/here');
    await expect(r.resolve('latest')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(r.fetch(blob(10).desc)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const known = repo('manifests/app');
    await expect(known.resolve('no-such-tag')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(known.resolve('no-such-tag')).rejects.toThrow(/manifests\/app:no-such-tag/);
  });

  it('runs several uploads at once on one repository', async () => {
    const r = repo('concurrent/uploads');
    const blobs = Array.from({ length: 6 }, (_, i) => blob(CHUNK * 2 + i * 1000));
    const descs = await Promise.all(blobs.map((b) => r.ingest(b.desc.mediaType, trickle(b.bytes, 9_000))));
    expect(descs).toEqual(blobs.map((b) => b.desc));
  });

  it('aborts a download when the signal fires', async () => {
    const r = repo('abort/download');
    const { bytes, desc } = blob(4 * 1024 * 1024);
    await r.push(desc, Readable.from([bytes]));
    const controller = new AbortController();
    const stream = await r.fetch(desc, { signal: controller.signal });
    const received = new Promise<void>((resolve, reject) => {
      stream.once('data', () => {
        controller.abort();
        stream.resume();
      });
      stream.on('error', reject);
      stream.on('end', resolve);
    });
    await expect(received).rejects.toMatchObject({ code: 'ABORTED' });
  });

  it('writes what skopeo reads with the same digest', async () => {
    const r = repo('interop/skopeo');
    const config = blob(50, 'application/vnd.oci.image.config.v1+json');
    const layer = blob(2_000, 'application/vnd.oci.image.layer.v1.tar');
    for (const b of [config, layer]) await r.push(b.desc, Readable.from([b.bytes]));
    const manifest = manifestOf(config.desc, [layer.desc]);
    await r.pushManifest(manifest.desc, manifest.bytes, 'v1');
    const { stdout } = await execa('skopeo', ['inspect', '--raw', '--tls-verify=false', `docker://${registry.host}/interop/skopeo:v1`]);
    expect(sha256(Buffer.from(stdout))).toBe(manifest.desc.digest);
  });

  it('aborts an upload when the signal fires', async () => {
    const r = repo('abort/upload');
    const { bytes, desc } = blob(CHUNK * 8);
    const controller = new AbortController();
    const pending = r.ingest(desc.mediaType, trickle(bytes, 16_000, 20), { signal: controller.signal });
    setTimeout(() => controller.abort(), 100);
    await expect(pending).rejects.toMatchObject({ code: 'ABORTED' });
    expect(await r.exists(desc)).toBe(false);
  });
});
