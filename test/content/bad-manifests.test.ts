import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { copy } from '../../src/commands/copy.js';
import { inspect } from '../../src/commands/inspect.js';
import { pull } from '../../src/commands/pull.js';
import { OciLayout } from '../../src/layout/store.js';
import { MediaType } from '../../src/oci/mediatypes.js';
import { sha256 } from '../../src/oci/digest.js';
import { ckpt, tempDir } from '../helpers/tree.js';

const CONFIG = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');

/** A layout whose tag `v1` points at `manifest` (any bytes, stored as a manifest), beside a valid config. */
async function layoutWith(manifest: string | Buffer): Promise<{ ref: string; work: string }> {
  const work = await tempDir('ckpt-bad-manifest-');
  const dir = join(work, 'layout');
  const layout = await OciLayout.open(dir, { create: true });
  await layout.ingest(MediaType.imageConfig, Readable.from([CONFIG]));
  const desc = await layout.ingest(MediaType.imageManifest, Readable.from([Buffer.from(manifest)]));
  await layout.tag(desc, 'v1');
  return { ref: `oci:${dir}:v1`, work };
}

const config = { mediaType: MediaType.imageConfig, digest: sha256(CONFIG), size: CONFIG.length };
const manifest = (fields: object) => JSON.stringify({ schemaVersion: 2, mediaType: MediaType.imageManifest, config, layers: [], ...fields });
const layer = { mediaType: MediaType.layerTar, digest: sha256(Buffer.from('x')), size: 1 };

const BAD: Array<[string, string]> = [
  ['not JSON', '{"schemaVersion":2,'],
  ['JSON that is not a manifest (layers is not a list)', manifest({ layers: {} })],
  ['a layer whose digest is not a digest', manifest({ layers: [{ ...layer, digest: 'sha256:abc' }] })],
  ['a layer without a size', manifest({ layers: [{ mediaType: layer.mediaType, digest: layer.digest }] })],
  ['a config descriptor that is a string', manifest({ config: 'sha256:abc' })],
];

describe('manifests that are not manifests', () => {
  for (const [name, bytes] of BAD) {
    it(`${name}: pull, inspect and copy fail with INVALID_MANIFEST naming the image, leaving nothing`, async () => {
      const { ref, work } = await layoutWith(bytes);
      const out = join(work, 'out');
      await expect(pull(ref, out)).rejects.toMatchObject({ code: 'INVALID_MANIFEST', message: expect.stringContaining(join(work, 'layout')) });
      await expect(pull(ref, `${out}.tar`)).rejects.toMatchObject({ code: 'INVALID_MANIFEST' });
      await expect(inspect(ref)).rejects.toMatchObject({ code: 'INVALID_MANIFEST' });
      await expect(copy(ref, `oci:${join(work, 'copy')}:v1`)).rejects.toMatchObject({ code: 'INVALID_MANIFEST' });
      expect([out, `${out}.tar`, join(work, "copy")].filter((p) => existsSync(p))).toEqual([]);
    });
  }

  it('over 4 MiB: refused before it is read, with INVALID_MANIFEST', async () => {
    const { ref, work } = await layoutWith(manifest({ annotations: { pad: 'x'.repeat(4 << 20) } }));
    await expect(pull(ref, join(work, 'out'))).rejects.toMatchObject({ code: 'INVALID_MANIFEST', message: expect.stringContaining('larger than') });
    await expect(inspect(ref)).rejects.toMatchObject({ code: 'INVALID_MANIFEST' });
  });

  it('the CLI exits 3 (bad input) with one line naming the image', async () => {
    const { ref, work } = await layoutWith(BAD[0]?.[1] ?? '');
    const run = await ckpt(['pull', ref, join(work, 'out')]);
    expect(run.exitCode).toBe(3);
    expect(run.stderr.trim().split('\n')).toHaveLength(1);
    expect(run.stderr).toContain(join(work, 'layout'));
  });
});
