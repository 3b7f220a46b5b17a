import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { copy } from '../../src/commands/copy.js';
import { push } from '../../src/commands/push.js';
import { openCheckpoint } from '../../src/checkpoint/open.js';
import { copyGraph } from '../../src/content/copy.js';
import { buildImage as buildCheckpointImage } from '../../src/image/build.js';
import { OciLayout } from '../../src/layout/store.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import type { Descriptor } from '../../src/oci/schemas.js';
import { THREADED_MIN_SIZE } from '../../src/unpack/plan.js';
import { unpackToDirectory } from '../../src/unpack/directory.js';
import { RegistryClient } from '../../src/registry/client.js';
import { RegistryRepository } from '../../src/registry/repository.js';
import { blob, collect, manifestOf, trickle } from '../helpers/blobs.js';
import { startFaultProxy, type FaultProxy } from '../helpers/fault-proxy.js';
import { DEFAULT_USERS, startRegistry, type RegistryServer } from '../helpers/registry.js';
import { rejection } from '../helpers/rejection.js';
import { fixture, tempDir } from '../helpers/tree.js';
import { buildImage } from '../unpack/helpers.js';

const CHUNK = 64 * 1024;
const PATCH_URL = /\/blobs\/uploads\/[^?]+/;

/** A one-layer image in an OCI layout under `work`. */
function smallImage(work: string): ReturnType<typeof buildImage> {
  return buildImage(join(work, 'layout'), [
    { compression: 'zstd', entries: [{ name: 'checkpoint/pages-1.img', mode: 0o644, mtime: new Date(0), body: randomBytes(10_000) }] },
  ]);
}

describe('faults between ckpt and the registry', () => {
  let registry: RegistryServer;
  let proxy: FaultProxy;
  let client: RegistryClient;
  let direct: RegistryClient;
  let n = 0;
  /** A fresh repository per test, seen through the proxy and, for checks, directly. */
  const repos = (): { viaProxy: RegistryRepository; check: RegistryRepository } => {
    const name = `faults/r${++n}`;
    return { viaProxy: new RegistryRepository(client, name), check: new RegistryRepository(direct, name) };
  };

  beforeAll(async () => {
    registry = await startRegistry();
    direct = new RegistryClient(registry.host, { plainHttp: true });
  });
  afterAll(async () => {
    await direct.close();
    await registry.stop();
  });
  // A proxy per test, so that rules never leak from one test to the next.
  afterEach(async () => {
    await client.close();
    await proxy.stop();
  });
  /** A proxy, and a small image tagged v1 in a fresh repository: its path (`/faults/rN`) and a work directory. */
  const taggedImage = async (): Promise<{ work: string; manifestDesc: Descriptor; path: string }> => {
    await useProxy();
    const { check } = repos();
    const work = await tempDir('ckpt-faults-');
    const { layout, manifestDesc } = await smallImage(work);
    await copyGraph(layout, check, manifestDesc);
    await check.tag(manifestDesc, 'v1');
    return { work, manifestDesc, path: check.name.slice(registry.host.length) };
  };
  const useProxy = async (): Promise<void> => {
    proxy = await startFaultProxy(registry.host);
    client = new RegistryClient(proxy.host, {
      plainHttp: true,
      chunkSize: CHUNK,
      retry: { attempts: 4, minDelayMs: 20, maxDelayMs: 100 },
    });
  };

  it('fails a download whose bytes were corrupted with DIGEST_MISMATCH', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const { bytes, desc } = blob(200_000);
    await check.push(desc, Readable.from([bytes]));
    proxy.add({ method: 'GET', url: /\/blobs\/sha256:/, fault: { kind: 'corrupt', at: 150_000 } });
    await expect(collect(await viaProxy.fetch(desc))).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
  });

  it('fails a pull whose large zstd layer was corrupted on the way: the worker decoding it checks the digest', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const work = await tempDir('ckpt-faults-');
    // Random bytes do not compress: the layer is large enough to be decoded on a worker thread.
    const pages = randomBytes(THREADED_MIN_SIZE + (1 << 20));
    const { layout, manifestDesc, layerDescs } = await buildImage(join(work, 'layout'), [
      { compression: 'zstd', entries: [{ name: 'checkpoint/pages-1.img', mode: 0o644, mtime: new Date(0), body: pages }] },
    ]);
    await copyGraph(layout, check, manifestDesc);
    // In the middle of the pages zstd decodes wrong bytes without noticing: only the digest tells.
    proxy.add({ method: 'GET', url: /\/blobs\/sha256:/, fault: { kind: 'corrupt', at: Math.floor((layerDescs[0]?.size ?? 0) / 2) } });
    const err = await rejection(unpackToDirectory(viaProxy, manifestDesc, join(work, 'out')));
    expect(err.code).toBe('DIGEST_MISMATCH');
    expect(err.message).toContain(layerDescs[0]?.digest);
    expect(err.subject).toBe(`${viaProxy.name}@${layerDescs[0]?.digest}`);
    expect(await readdir(work)).toEqual(['layout']);
  });

  it('lets copy read the source manifest with one GET, whose bytes it copies', async () => {
    const { work, manifestDesc, path } = await taggedImage();
    const result = await copy(`${proxy.host}${path}:v1`, `oci:${join(work, 'copied')}:v1`, { plainHttp: true });
    expect(result.descriptor).toEqual(manifestDesc);
    expect(proxy.requests.filter((r) => r.url.includes('/manifests/'))).toEqual([{ method: 'GET', url: `/v2${path}/manifests/v1` }]);
    expect(await (await OciLayout.open(join(work, 'copied'))).resolve('v1')).toEqual(manifestDesc);
  });

  it('follows manifest requests redirected to another host, as registry.k8s.io answers, and pulls the image', async () => {
    const { work, manifestDesc, path } = await taggedImage();
    const elsewhere = (method: string, times: number) =>
      proxy.add({ method, url: /\/manifests\//, times, fault: { kind: 'redirect', location: `http://${registry.host}/v2${path}/manifests/${manifestDesc.digest}` } });
    const moved = [elsewhere('HEAD', 2), elsewhere('GET', 1)];
    const viaProxy = new RegistryRepository(client, path.slice(1));
    expect(await viaProxy.resolve('v1')).toEqual(manifestDesc);
    expect(await viaProxy.exists(manifestDesc)).toBe(true);
    const result = await copy(`${proxy.host}${path}:v1`, `oci:${join(work, 'copied')}:v1`, { plainHttp: true });
    expect(result.descriptor).toEqual(manifestDesc);
    expect(moved.map((rule) => rule.fired)).toEqual([2, 1]);
    expect(await (await OciLayout.open(join(work, 'copied'))).resolve('v1')).toEqual(manifestDesc);
  });

  it('tags with the manifest bytes it is given, without reading them back, and only with the right ones', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const work = await tempDir('ckpt-faults-');
    const { layout, manifestDesc } = await smallImage(work);
    await copyGraph(layout, check, manifestDesc);
    const bytes = await collect(await layout.fetch(manifestDesc));
    await viaProxy.tag(manifestDesc, 'v1', { bytes });
    const wrong = Buffer.from(bytes.toString('utf8').replace('"schemaVersion":2', '"schemaVersion": 2'));
    await expect(viaProxy.tag(manifestDesc, 'v2', { bytes: wrong })).rejects.toMatchObject({ code: 'SIZE_MISMATCH' });
    const altered = Buffer.from(bytes.toString('utf8').replace('"schemaVersion":2', '"schemaVersion":3'));
    await expect(viaProxy.tag(manifestDesc, 'v2', { bytes: altered })).rejects.toMatchObject({ code: 'DIGEST_MISMATCH' });
    const path = check.name.slice(registry.host.length);
    expect(proxy.requests.filter((r) => r.url.includes('/manifests/'))).toEqual([{ method: 'PUT', url: `/v2${path}/manifests/v1` }]);
    expect(await check.resolve('v1')).toMatchObject({ digest: manifestDesc.digest });
    await expect(check.resolve('v2')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('builds into a registry and stores the manifest with its tag in one PUT, reading nothing back', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const result = await buildCheckpointImage(await openCheckpoint(fixture('podman-counter.tar')), viaProxy, { tag: 'v1', hostInfo: false });
    const path = check.name.slice(registry.host.length);
    expect(proxy.requests.filter((r) => r.url.includes('/manifests/'))).toEqual([{ method: 'PUT', url: `/v2${path}/manifests/v1` }]);
    expect(await check.fetchReference(result.descriptor.digest)).toMatchObject({ desc: { digest: result.descriptor.digest } });
    expect(await check.resolve('v1')).toMatchObject({ digest: result.descriptor.digest });
  });

  it('copies between repositories reading the source manifest once and storing it with its tag in one PUT', async () => {
    await useProxy();
    const from = repos();
    const to = repos();
    const work = await tempDir('ckpt-faults-');
    const { layout, manifestDesc } = await smallImage(work);
    await copyGraph(layout, from.check, manifestDesc);
    await from.check.tag(manifestDesc, 'v1');
    const [src, dst] = [from, to].map((r) => r.check.name.slice(registry.host.length));
    const copyOnce = () => copy(`${proxy.host}${src}:v1`, `${proxy.host}${dst}:v1`, { plainHttp: true });
    expect((await copyOnce()).descriptor).toEqual(manifestDesc);
    const manifestRequests = [
      { method: 'GET', url: `/v2${src}/manifests/v1` },
      { method: 'PUT', url: `/v2${dst}/manifests/v1` },
    ];
    expect(proxy.requests.filter((r) => r.url.includes('/manifests/'))).toEqual(manifestRequests);
    // Again, where the destination has it all: the same two.
    proxy.requests.length = 0;
    await copyOnce();
    expect(proxy.requests.filter((r) => r.url.includes('/manifests/'))).toEqual(manifestRequests);
    expect(await to.check.resolve('v1')).toMatchObject({ digest: manifestDesc.digest });
  });

  it('copies a blob the destination lacks with one HEAD for it, then its upload', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const { layout, manifestDesc, layerDescs } = await smallImage(await tempDir('ckpt-faults-'));
    await copyGraph(layout, viaProxy, manifestDesc);
    const heads = proxy.requests.filter((r) => r.method === 'HEAD' && r.url.includes('/blobs/')).map((r) => r.url);
    // The config and the layer, each looked for once.
    expect(heads).toHaveLength(2);
    expect(new Set(heads).size).toBe(2);
    for (const layer of layerDescs) expect(await check.exists(layer)).toBe(true);
  });

  it('refuses an index holding a manifest of a kind it does not read into, before writing anything', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const source = await OciLayout.open(join(await tempDir('ckpt-faults-'), 'layout'), { create: true });
    // An OCI 1.1-rc artifact manifest: its blob is listed under "blobs", which copying its bytes alone would leave behind.
    const payload = blob(1000);
    await source.push(payload.desc, Readable.from([payload.bytes]));
    const artifactType = 'application/vnd.oci.artifact.manifest.v1+json';
    const artifact = await source.ingest(artifactType, Readable.from([Buffer.from(JSON.stringify({ mediaType: artifactType, artifactType: 'x/y', blobs: [payload.desc] }))]));
    const index = await source.ingest(
      MediaType.imageIndex,
      Readable.from([Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.imageIndex, manifests: [artifact] }))]),
    );
    const err = await rejection(copyGraph(source, viaProxy, index, { tag: 'v1' }));
    expect(err.code).toBe('UNSUPPORTED');
    expect(err.message).toContain(artifactType);
    expect(proxy.requests.filter((r) => r.method !== 'GET' && r.method !== 'HEAD')).toEqual([]);
    await expect(check.resolve('v1')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // A lone one, as the root, too.
    await expect(copyGraph(source, viaProxy, artifact, { tag: 'v1' })).rejects.toMatchObject({ code: 'UNSUPPORTED' });
    expect(await check.exists(payload.desc)).toBe(false);
  });

  it('refuses a manifest over 4 MiB from the registry with INVALID_MANIFEST, as from a layout', async () => {
    await useProxy();
    const { viaProxy } = repos();
    const huge = Buffer.from(JSON.stringify({ schemaVersion: 2, layers: [], annotations: { pad: 'x'.repeat(4 << 20) } }));
    proxy.add({ method: 'GET', url: /\/manifests\/v1$/, fault: { kind: 'answer', headers: { 'content-type': 'application/vnd.oci.image.manifest.v1+json' }, body: huge } });
    await expect(viaProxy.fetchReference('v1')).rejects.toMatchObject({ code: 'INVALID_MANIFEST', message: expect.stringContaining('larger than') });
    await expect(viaProxy.ingest('application/vnd.oci.image.manifest.v1+json', Readable.from([huge]))).rejects.toMatchObject({ code: 'INVALID_MANIFEST' });
    expect(proxy.requests.filter((r) => r.method === 'PUT')).toEqual([]);
  });

  it('reads a manifest again when its connection is cut mid-body, and fails with NETWORK when it always is', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const built = await buildCheckpointImage(await openCheckpoint(fixture('podman-counter.tar')), check, { tag: 'v1', hostInfo: false });
    const manifests = () => proxy.requests.filter((r) => r.method === 'GET' && r.url.includes('/manifests/')).length;
    const cut = proxy.add({ method: 'GET', url: /\/manifests\//, fault: { kind: 'cut-response', afterBytes: 100 }, times: 2 });
    expect((await viaProxy.fetchReference('v1')).desc.digest).toBe(built.descriptor.digest);
    expect(cut.fired).toBe(2);
    expect(manifests()).toBe(3);
    proxy.add({ method: 'GET', url: /\/manifests\//, fault: { kind: 'cut-response', afterBytes: 100 }, times: 1 });
    expect((await collect(await viaProxy.fetch(built.descriptor))).length).toBe(built.descriptor.size);
    proxy.add({ method: 'GET', url: /\/manifests\//, fault: { kind: 'cut-response', afterBytes: 100 }, times: 10 });
    await expect(viaProxy.fetchReference('v1')).rejects.toMatchObject({ code: 'NETWORK', subject: expect.stringContaining(':v1') });
  });

  it('reports a refusal whose error document is cut short by its status', async () => {
    await useProxy();
    const { viaProxy } = repos();
    proxy.add({ method: 'GET', url: /\/manifests\/missing$/, fault: { kind: 'cut-response', afterBytes: 10 } });
    await expect(viaProxy.fetchReference('missing')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('resolves an upload Location relative to the uploads URL, not the host root', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const path = check.name.slice(registry.host.length);
    // A real session, whose Location the proxy then gives path-relative: "<uuid>?_state=...".
    const opened = await fetch(`http://${registry.host}/v2${path}/blobs/uploads/`, { method: 'POST' });
    const location = opened.headers.get('location') ?? '';
    const relative = location.slice(location.indexOf('/blobs/uploads/') + '/blobs/uploads/'.length);
    expect(relative).toMatch(/^[0-9a-f-]+\?/);
    proxy.add({ method: 'POST', url: /\/blobs\/uploads\/$/, fault: { kind: 'answer', status: 202, headers: { location: relative }, body: Buffer.alloc(0) } });
    const { bytes, desc } = blob(CHUNK + 10);
    expect(await viaProxy.ingest(desc.mediaType, Readable.from([bytes]))).toEqual(desc);
    expect((await collect(await check.fetch(desc))).equals(bytes)).toBe(true);
  });

  it('resumes a download cut in the middle with a Range request', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const { bytes, desc } = blob(1_000_000);
    await check.push(desc, Readable.from([bytes]));
    const cut = proxy.add({ method: 'GET', url: /\/blobs\/sha256:/, fault: { kind: 'cut-response', afterBytes: 300_000 }, times: 2 });
    expect((await collect(await viaProxy.fetch(desc))).equals(bytes)).toBe(true);
    expect(cut.fired).toBe(2);
    expect(proxy.requests.filter((r) => r.method === 'GET').length).toBe(3);
  });

  it('resumes a download whose registry stalls mid-body, once the body timeout passes', async () => {
    await useProxy();
    const { check } = repos();
    const { bytes, desc } = blob(1_000_000);
    await check.push(desc, Readable.from([bytes]));
    const impatient = new RegistryClient(proxy.host, { plainHttp: true, bodyTimeoutMs: 300, retry: { attempts: 4, minDelayMs: 20, maxDelayMs: 100 } });
    try {
      const stall = proxy.add({ method: 'GET', url: /\/blobs\/sha256:/, fault: { kind: 'stall-response', afterBytes: 300_000 } });
      const viaProxy = new RegistryRepository(impatient, check.repository);
      expect((await collect(await viaProxy.fetch(desc))).equals(bytes)).toBe(true);
      expect(stall.fired).toBe(1);
      expect(proxy.requests.filter((r) => r.method === 'GET').length).toBe(2);
    } finally {
      await impatient.close();
    }
  });

  it('resumes a chunked upload whose connection broke before the registry saw the chunk', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const { bytes, desc } = blob(CHUNK * 4 + 10);
    const drop = proxy.add({ method: 'PATCH', url: PATCH_URL, skip: 1, fault: { kind: 'drop-request', afterBytes: CHUNK / 2 } });
    expect(await viaProxy.ingest(desc.mediaType, trickle(bytes, 8_000))).toEqual(desc);
    expect(drop.fired).toBe(1);
    expect((await collect(await check.fetch(desc))).equals(bytes)).toBe(true);
    // The offset came from GET <Location>.
    expect(proxy.requests.some((r) => r.method === 'GET' && PATCH_URL.test(r.url))).toBe(true);
  });

  it('starts over when a first chunk half reached the registry (distribution cannot resume that)', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const { bytes, desc } = blob(CHUNK * 3);
    const cut = proxy.add({ method: 'PATCH', url: PATCH_URL, fault: { kind: 'cut-request', afterBytes: CHUNK / 2 } });
    expect(await viaProxy.ingest(desc.mediaType, trickle(bytes, 8_000))).toEqual(desc);
    expect(cut.fired).toBe(1);
    // A second session was opened.
    expect(proxy.requests.filter((r) => r.method === 'POST').length).toBe(2);
    expect((await collect(await check.fetch(desc))).equals(bytes)).toBe(true);
  });

  it('fails cleanly when a later chunk half reached a registry that cannot resume', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const { bytes, desc } = blob(CHUNK * 3);
    proxy.add({ method: 'PATCH', url: PATCH_URL, skip: 1, fault: { kind: 'cut-request', afterBytes: CHUNK / 2 } });
    const err: unknown = await viaProxy.ingest(desc.mediaType, trickle(bytes, 8_000)).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'NETWORK' });
    expect(String(err)).toMatch(/cannot resume the upload/);
    expect(await check.exists(desc)).toBe(false);
  });

  it('resumes a known-digest upload after a 500 on a chunk', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const { bytes, desc } = blob(CHUNK * 3 + 5);
    const fault = proxy.add({ method: 'PATCH', url: PATCH_URL, skip: 1, fault: { kind: 'status', status: 500 } });
    await viaProxy.push(desc, trickle(bytes, 8_000));
    expect(fault.fired).toBe(1);
    expect((await collect(await check.fetch(desc))).equals(bytes)).toBe(true);
  });

  it('streams a blob in one PATCH where chunks are refused (GHCR: 416 above 4 MiB with Content-Range), and the next blobs straight away', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const refuse = proxy.add({ method: 'PATCH', url: PATCH_URL, header: 'content-range', fault: { kind: 'status', status: 416 }, times: 100 });
    const first = blob(CHUNK * 3 + 7);
    expect(await viaProxy.ingest(first.desc.mediaType, trickle(first.bytes, 8_000))).toEqual(first.desc);
    const second = blob(CHUNK * 2 + 9);
    await viaProxy.push(second.desc, trickle(second.bytes, 8_000));
    expect(refuse.fired).toBe(1);
    expect(proxy.requests.filter((r) => r.method === 'PATCH')).toHaveLength(3);
    for (const { bytes, desc } of [first, second]) expect((await collect(await check.fetch(desc))).equals(bytes)).toBe(true);
    // A whole push, whose page layers upload from workers at once.
    const name = `faults/chunkless${++n}:v1`;
    const pushed = await push(fixture('podman-counter.tar'), `${proxy.host}/${name}`, { chunkSize: CHUNK, plainHttp: true, hostInfo: false });
    const copied = await copy(`${registry.host}/${name}`, `oci:${join(await tempDir(), 'copied')}:v1`, { plainHttp: true });
    expect(copied.descriptor.digest).toBe(pushed.descriptor.digest);
  });

  it('starts a blob over in one streamed PATCH where a second chunk is refused (Artifact Registry takes one PATCH per session)', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const refuse = proxy.add({ method: 'PATCH', url: PATCH_URL, skip: 1, fault: { kind: 'status', status: 400 } });
    const { bytes, desc } = blob(CHUNK * 4 + 3);
    expect(await viaProxy.ingest(desc.mediaType, trickle(bytes, 8_000))).toEqual(desc);
    expect(refuse.fired).toBe(1);
    expect(proxy.requests.filter((r) => r.method === 'POST')).toHaveLength(2);
    expect((await collect(await check.fetch(desc))).equals(bytes)).toBe(true);
  });

  it('pushes blobs at once to a registry taking one PATCH per session: each starts over whole, whichever finds the refusal first', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    proxy.add({ method: 'PATCH', url: PATCH_URL, header: 'content-range', headerValue: /^[1-9]/, fault: { kind: 'status', status: 400 }, times: 100 });
    const blobs = [1, 2, 3, 4].map((i) => blob(CHUNK * 5 + i));
    await Promise.all(blobs.map(({ bytes, desc }) => viaProxy.push(desc, trickle(bytes, 8_000))));
    for (const { bytes, desc } of blobs) expect((await collect(await check.fetch(desc))).equals(bytes)).toBe(true);
  });

  it("reports the source's own failure during a streamed upload, not the request it broke", async () => {
    await useProxy();
    const { viaProxy } = repos();
    proxy.add({ method: 'PATCH', url: PATCH_URL, header: 'content-range', fault: { kind: 'status', status: 416 }, times: 100 });
    const { bytes } = blob(CHUNK * 4);
    const source = Readable.from(
      (async function* () {
        for (let at = 0; at < CHUNK * 3; at += 8_000) {
          await new Promise((resolve) => setTimeout(resolve, 1));
          yield bytes.subarray(at, at + 8_000);
        }
        throw new Error('disk read failed');
      })(),
    );
    await expect(viaProxy.ingest(MediaType.layerTar, source)).rejects.toThrow(/^disk read failed$/);
  });

  it("reports a later chunk's refusal by a registry that took chunks before, having nothing to start over from", async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const taken = blob(CHUNK * 3);
    await viaProxy.push(taken.desc, trickle(taken.bytes, 8_000));
    proxy.add({ method: 'PATCH', url: PATCH_URL, skip: 2, fault: { kind: 'status', status: 400 } });
    const { bytes, desc } = blob(CHUNK * 4 + 3);
    const err = await rejection(viaProxy.push(desc, trickle(bytes, 8_000)));
    expect(err.message).toMatch(/PATCH .*HTTP 400/);
    expect(await check.exists(desc)).toBe(false);
  });

  it('takes 204 for a chunk, as Pulp (Red Hat Satellite) answers', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const rewrite = proxy.add({ method: 'PATCH', url: PATCH_URL, fault: { kind: 'rewrite-status', status: 204 }, times: 100 });
    const { bytes, desc } = blob(CHUNK * 3 + 1);
    await viaProxy.push(desc, trickle(bytes, 8_000));
    expect(rewrite.fired).toBe(3);
    expect((await collect(await check.fetch(desc))).equals(bytes)).toBe(true);
  });

  it('retries 500 on manifest requests and 429 with Retry-After on upload starts', async () => {
    await useProxy();
    const { viaProxy } = repos();
    const config = blob(100, 'application/vnd.oci.image.config.v1+json');
    const manifest = manifestOf(config.desc, []);
    const throttled = proxy.add({ method: 'POST', url: /\/blobs\/uploads\/$/, fault: { kind: 'status', status: 429, retryAfter: 1 } });
    const started = Date.now();
    await viaProxy.push(config.desc, Readable.from([config.bytes]));
    expect(throttled.fired).toBe(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(950);
    const failing = proxy.add({ method: 'PUT', url: /\/manifests\//, fault: { kind: 'status', status: 503 }, times: 2 });
    await viaProxy.pushManifest(manifest.desc, manifest.bytes, 'v1');
    expect(failing.fired).toBe(2);
    proxy.add({ method: 'HEAD', url: /\/manifests\/v1/, fault: { kind: 'status', status: 500 }, times: 2 });
    expect(await viaProxy.resolve('v1')).toEqual(manifest.desc);
  });

  it('a registry refusing the upload of a streamed layer: DENIED from push, not the tar stream it cut short', async () => {
    await useProxy();
    const denied = { kind: 'answer', status: 403, headers: { 'content-type': 'application/json' }, body: Buffer.from('{"errors":[{"code":"DENIED","message":"quota exceeded"}]}') } as const;
    proxy.add({ method: 'PATCH', url: PATCH_URL, fault: denied, times: 1000 });
    proxy.add({ method: 'PUT', url: PATCH_URL, fault: denied, times: 1000 });
    // Layers written on the main thread: uncompressed, gzip, and those of a directory.
    const cases = [
      ['podman-counter.tar', 'none'],
      ['podman-counter.tar.zst', 'gzip'],
      ['criu-raw-shell', 'none'],
    ] as const;
    for (const [source, compression] of cases) {
      const err = await rejection(push(fixture(source), `${proxy.host}/faults/denied${++n}:v1`, { compression, chunkSize: 1024 }));
      expect(err.code, `${source}, ${compression}: ${err.message}`).toBe('DENIED');
      expect(err.message).toContain('quota exceeded');
    }
  });

  it('gives up with REGISTRY_ERROR when the registry keeps failing', async () => {
    await useProxy();
    const { viaProxy } = repos();
    proxy.add({ method: 'HEAD', url: /\/manifests\//, fault: { kind: 'status', status: 502 }, times: 100 });
    await expect(viaProxy.resolve('latest')).rejects.toMatchObject({ code: 'REGISTRY_ERROR', message: expect.stringMatching(/HTTP 502/) });
    expect(proxy.requests.length).toBe(4);
  });

  it('retries a request whose connection dropped before an answer', async () => {
    await useProxy();
    const { viaProxy, check } = repos();
    const { bytes, desc } = blob(1000);
    await check.push(desc, Readable.from([bytes]));
    const drop = proxy.add({ method: 'HEAD', url: /\/blobs\//, fault: { kind: 'drop-request', afterBytes: 0 } });
    expect(await viaProxy.exists(desc)).toBe(true);
    expect(drop.fired).toBe(1);
  });
});

describe('redirects to blob storage', () => {
  it('follows a redirect to another host without sending Authorization, and within the host with it', async () => {
    const registry = await startRegistry({ auth: 'htpasswd' });
    const proxy = await startFaultProxy(registry.host);
    const { bytes, desc } = blob(50_000);
    const seen: (string | undefined)[] = [];
    const storage = createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.writeHead(200, { 'content-length': String(bytes.length) }).end(bytes);
    });
    await new Promise<void>((resolve) => storage.listen(0, '127.0.0.1', resolve));
    const { port } = storage.address() as AddressInfo;
    const r = RegistryRepository.open(
      { registry: proxy.host, repository: 'redirect/app' },
      { plainHttp: true, credentials: () => Promise.resolve({ username: 'alice', password: DEFAULT_USERS.alice }) },
    );
    try {
      await r.push(desc, Readable.from([bytes]));
      proxy.add({ method: 'GET', url: /\/blobs\/sha256:/, fault: { kind: 'redirect', location: `http://127.0.0.1:${port}/storage/blob?sig=x` } });
      expect((await collect(await r.fetch(desc))).equals(bytes)).toBe(true);
      expect(seen).toEqual([undefined]);
      // Within the registry's own host, a redirect keeps the credentials the registry asks for.
      const rule = proxy.add({ method: 'GET', url: /\/blobs\/sha256:[0-9a-f]+$/, fault: { kind: 'redirect', location: `http://${proxy.host}/v2/redirect/app/blobs/${desc.digest}?moved=1` } });
      expect((await collect(await r.fetch(desc))).equals(bytes)).toBe(true);
      expect(rule.fired).toBe(1);
    } finally {
      await r.close();
      await proxy.stop();
      await new Promise<void>((resolve) => storage.close(() => resolve()));
      await registry.stop();
    }
  });
});
