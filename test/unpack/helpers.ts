import { execFile } from 'node:child_process';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { promisify } from 'node:util';
import { type Compression, compressor } from '../../src/compress/codec.js';
import { OciLayout } from '../../src/layout/store.js';
import { CHECKPOINT_ARTIFACT_TYPE, MediaType } from '../../src/oci/mediatypes.js';
import type { Descriptor } from '../../src/oci/schemas.js';
import { sha256 } from '../../src/oci/digest.js';
import { type TarSpec, tarOf } from '../tar/build-tar.js';
import { fixture } from '../helpers/tree.js';

export const FIXTURE_LAYOUT = fixture('podman-image-layout');
export const FIXTURE_TAG = 'counter-ckpt';
/** The fixture image's only layer (tar+gzip). */
export const FIXTURE_LAYER = 'sha256:4bf001ad78b7daffbf8086942e28f5197ca211e99c219ad18b4982f7669a6d9c';

const run = promisify(execFile);

/** Extracts an archive with GNU tar, an implementation independent of ours, keeping modes and owners. */
export async function gnuTarExtract(archive: string, dir: string): Promise<void> {
  await run('tar', ['--extract', '--auto-compress', '--same-permissions', '--numeric-owner', '-f', archive, '-C', dir]);
}

export async function gnuTarList(archive: string): Promise<string[]> {
  const { stdout } = await run('tar', ['--list', '-f', archive]);
  return stdout.split('\n').filter((line) => line !== '');
}

/**
 * Every entry below `root` as one comparable line: type, mode, mtime (seconds, as tar keeps them)
 * and content digest or link target. The root itself is left out.
 */
export async function snapshot(root: string): Promise<Record<string, string>> {
  const lines: Record<string, string> = {};
  async function walk(rel: string): Promise<void> {
    for (const name of (await readdir(join(root, rel))).sort()) {
      const path = rel === '' ? name : `${rel}/${name}`;
      const full = join(root, path);
      const info = await lstat(full);
      const mode = (info.mode & 0o7777).toString(8);
      const mtime = Math.floor(info.mtimeMs / 1000);
      if (info.isDirectory()) {
        lines[path] = `dir ${mode} ${mtime}`;
        await walk(path);
      } else if (info.isSymbolicLink()) {
        lines[path] = `symlink -> ${await readlink(full)}`;
      } else {
        lines[path] = `file ${mode} ${mtime} ${sha256(await readFile(full))}`;
      }
    }
  }
  await walk('');
  return lines;
}

async function compress(data: Buffer, kind: Compression): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of Readable.from([data]).pipe(compressor(kind))) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

const LAYER_TYPES: Record<Compression, string> = { none: MediaType.layerTar, gzip: MediaType.layerGzip, zstd: MediaType.layerZstd };

export interface TestLayer {
  entries: TarSpec[];
  compression?: Compression;
  /** Overrides the layer's media type (to make an unsupported one). */
  mediaType?: string;
  /** Keeps only this many bytes of the tar (a layer cut short, with a correct digest). */
  truncate?: number;
  /** Zero bytes after the compressed stream, inside the blob and its digest. */
  trailing?: number;
}

/** Writes an image with the given layers into a new OCI layout at `dir`, tagged `tag`. */
export async function buildImage(
  dir: string,
  layers: TestLayer[],
  options: { artifactType?: string; tag?: string } = {},
): Promise<{ layout: OciLayout; manifestDesc: Descriptor; layerDescs: Descriptor[] }> {
  const layout = await OciLayout.open(dir, { create: true });
  const layerDescs: Descriptor[] = [];
  const diffIds: string[] = [];
  for (const layer of layers) {
    const kind = layer.compression ?? 'gzip';
    const whole = await tarOf(layer.entries);
    const tar = layer.truncate === undefined ? whole : whole.subarray(0, layer.truncate);
    const blob = Buffer.concat([await compress(tar, kind), Buffer.alloc(layer.trailing ?? 0)]);
    const desc = { mediaType: layer.mediaType ?? LAYER_TYPES[kind], digest: sha256(blob), size: blob.length };
    await layout.push(desc, Readable.from([blob]));
    layerDescs.push(desc);
    diffIds.push(sha256(tar));
  }
  const config = Buffer.from(JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: diffIds } }));
  const configDesc = { mediaType: MediaType.imageConfig, digest: sha256(config), size: config.length };
  await layout.push(configDesc, Readable.from([config]));
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.imageManifest,
      ...(options.artifactType ? { artifactType: options.artifactType } : {}),
      config: configDesc,
      layers: layerDescs,
    }),
  );
  const manifestDesc = { mediaType: MediaType.imageManifest, digest: sha256(manifest), size: manifest.length };
  await layout.push(manifestDesc, Readable.from([manifest]));
  await layout.tag(manifestDesc, options.tag ?? 'latest');
  return { layout, manifestDesc, layerDescs };
}

/** Three layers the way ckpt builds them: metadata, memory pages, file-system diff; no file twice. */
export const CHECKPOINT_LAYERS: TestLayer[] = [
  {
    compression: 'zstd',
    entries: [
      { name: 'checkpoint/', type: 'directory', mode: 0o700, mtime: new Date('2026-01-01T00:00:00Z') },
      { name: 'checkpoint/inventory.img', mode: 0o600, body: 'inventory' },
      { name: 'checkpoint/core-1.img', mode: 0o644, body: 'core' },
      { name: 'config.dump', mode: 0o600, body: '{"id":"x"}' },
      { name: 'spec.dump', mode: 0o600, body: '{}' },
    ],
  },
  {
    compression: 'gzip',
    entries: [
      { name: 'checkpoint/', type: 'directory', mode: 0o700, mtime: new Date('2026-01-01T00:00:00Z') },
      { name: 'checkpoint/pages-1.img', mode: 0o644, body: Buffer.alloc(3 << 20, 0x5a) },
      { name: 'checkpoint/pages-2.img', mode: 0o644, body: Buffer.alloc(1 << 20, 0xa5) },
    ],
  },
  {
    compression: 'none',
    entries: [
      { name: 'rootfs-diff.tar', mode: 0o600, body: Buffer.alloc(10240) },
      { name: 'deleted.files', mode: 0o600, body: '["/etc/motd"]' },
      { name: 'artifacts/', type: 'directory', mode: 0o755 },
      { name: 'artifacts/link', type: 'symlink', linkname: '../config.dump' },
    ],
  },
];

export { CHECKPOINT_ARTIFACT_TYPE };
