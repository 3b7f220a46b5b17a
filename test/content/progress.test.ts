import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { build } from '../../src/commands/build.js';
import { copy } from '../../src/commands/copy.js';
import { pull } from '../../src/commands/pull.js';
import type { ProgressEvent } from '../../src/content/target.js';
import { startRegistry, type RegistryServer } from '../helpers/registry.js';
import { fixture, tempDir } from '../helpers/tree.js';

let registry: RegistryServer;
beforeAll(async () => {
  registry = await startRegistry();
});
afterAll(async () => {
  await registry.stop();
});

/** Every blob's events, in order, as `state:bytes`. */
function recorder(): { onProgress: (e: ProgressEvent) => void; byBlob: Map<string, ProgressEvent[]> } {
  const byBlob = new Map<string, ProgressEvent[]>();
  return {
    byBlob,
    onProgress: (e) => {
      const key = e.digest ?? e.id ?? '?';
      byBlob.set(key, [...(byBlob.get(key) ?? []), e]);
    },
  };
}

/** One transfer per blob: start, bytes that only grow, one done with the blob's size; or one skipped. */
function expectOneTransferEach(byBlob: Map<string, ProgressEvent[]>, what: string): void {
  expect(byBlob.size).toBeGreaterThan(2);
  for (const [digest, events] of byBlob) {
    const states = events.map((e) => e.state).join(' ');
    expect(states, `${what}: ${digest}`).toMatch(/^(start( progress)* done|skipped|mounted)$/);
    const bytes = events.map((e) => e.bytes);
    expect(bytes, `${what}: ${digest}`).toEqual([...bytes].sort((a, b) => a - b));
    const last = events.at(-1);
    expect(last?.bytes, `${what}: ${digest}`).toBe(last?.total);
  }
}

describe('progress of a copy', () => {
  it('registry to layout and layout to registry: each blob reported once, by the side that writes it', async () => {
    const work = await tempDir();
    const ref = `${registry.host}/progress/counter:v1`;
    await build(fixture('podman-counter.tar'), ref, { hostInfo: false });
    const down = recorder();
    await copy(ref, `oci:${join(work, 'layout')}:v1`, { onProgress: down.onProgress });
    expectOneTransferEach(down.byBlob, 'registry to layout');
    const up = recorder();
    await copy(`oci:${join(work, 'layout')}:v1`, `${registry.host}/progress/other:v1`, { onProgress: up.onProgress });
    expectOneTransferEach(up.byBlob, 'layout to registry');
  });
});

describe('pull to a layout', () => {
  it('gives the manifest for this node of an image whose reference is an index, as a pull to a directory does', async () => {
    const work = await tempDir();
    const built = await build(fixture('containerd-counter.tar'), `oci:${join(work, 'src')}:v1`, { hostInfo: false });
    expect(built.descriptor.mediaType).toBe('application/vnd.oci.image.index.v1+json');
    const toLayout = await pull(`oci:${join(work, 'src')}:v1`, `oci:${join(work, 'dst')}:v1`);
    const toDir = await pull(`oci:${join(work, 'src')}:v1`, join(work, 'dir'));
    expect(toLayout.descriptor).toEqual(built.descriptor);
    expect(toLayout.manifest).toEqual(toDir.manifest);
    expect(toLayout.manifest.digest).toBe(built.manifest.digest);
  });
});
