import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { CheckpointMetadataSchema, HostInfoSchema } from '../checkpoint/schemas.js';
import { DescriptorSchema } from '../oci/schemas.js';
import type { WrittenLayer } from './layer.js';

/**
 * Remembers which layers a checkpoint gave, keyed by the source's identity (path, size, times,
 * inode) and the build options: pushing the same checkpoint again then checks that the registry
 * has those layers and sends none of them, instead of compressing gigabytes to learn digests it
 * already knew.
 */
const EntrySchema = z.object({
  layers: z.array(z.object({ role: z.enum(['metadata', 'pages', 'rootfs-diff']), desc: DescriptorSchema, diffId: z.string() })),
  metadata: CheckpointMetadataSchema,
  host: HostInfoSchema.optional(),
  /** hostFingerprint() when `host` was collected: while it holds, `host` still describes this node. */
  hostKey: z.string().optional(),
});
export type CachedBuild = z.infer<typeof EntrySchema>;

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CKPT_CACHE_DIR) return env.CKPT_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'ckpt', 'builds');
}

export class BuildCache {
  constructor(readonly dir: string = defaultCacheDir()) {}

  static key(parts: unknown): string {
    return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
  }

  async get(key: string): Promise<CachedBuild | undefined> {
    try {
      const parsed = EntrySchema.safeParse(JSON.parse(await readFile(join(this.dir, `${key}.json`), 'utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  /** Best effort: a cache that cannot be written only costs speed next time. */
  async put(key: string, entry: Omit<CachedBuild, 'layers'> & { layers: WrittenLayer[] }): Promise<void> {
    const temp = join(this.dir, `.${key}.${randomUUID()}`);
    try {
      await mkdir(this.dir, { recursive: true, mode: 0o700 });
      await writeFile(temp, JSON.stringify(entry), { mode: 0o600 });
      await rename(temp, join(this.dir, `${key}.json`));
    } catch {
      await rm(temp, { force: true });
    }
  }
}
