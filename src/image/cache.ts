import { createHash, randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { z } from 'zod';
import { CheckpointMetadataSchema, type HostInfo, HostInfoSchema } from '../checkpoint/schemas.js';
import { DescriptorSchema } from '../oci/schemas.js';
import type { WrittenLayer } from './layer.js';
import { CkptError } from '../errors.js';
import { PRIVATE_DIR, PRIVATE_FILE } from '../fs/private-modes.js';

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

/** A node's facts, under the hostFingerprint() taken before they were asked. */
const HostEntrySchema = z.object({ hostKey: z.string(), host: HostInfoSchema });

export function defaultCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.CKPT_CACHE_DIR) return env.CKPT_CACHE_DIR;
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'ckpt', 'builds');
}

export class BuildCache {
  readonly dir: string;

  constructor(dir: string = defaultCacheDir()) {
    // Checked now: a wrong one found while the build writes its cache entry would fail a tagged build.
    if (typeof dir !== 'string' || dir === '') throw new CkptError('USAGE', `a BuildCache directory must be a non-empty string, not ${JSON.stringify(dir) ?? String(dir)}`);
    this.dir = dir;
  }

  static key(parts: unknown): string {
    return createHash('sha256').update(JSON.stringify(parts)).digest('hex');
  }

  async get(key: string): Promise<CachedBuild | undefined> {
    return this.#read(`${key}.json`, EntrySchema);
  }

  /**
   * This node's facts while `hostKey` (hostFingerprint()) holds: a build of another checkpoint
   * on the same node need not run every program's `--version` again.
   */
  async host(hostKey: string): Promise<HostInfo | undefined> {
    const entry = await this.#read(hostFile(hostKey), HostEntrySchema);
    return entry?.hostKey === hostKey ? entry.host : undefined;
  }

  async putHost(hostKey: string, host: HostInfo): Promise<void> {
    await this.#write(hostFile(hostKey), { hostKey, host });
  }

  async #read<T>(file: string, schema: z.ZodType<T>): Promise<T | undefined> {
    try {
      const parsed = schema.safeParse(JSON.parse(await readFile(join(this.dir, file), 'utf8')));
      return parsed.success ? parsed.data : undefined;
    } catch {
      return undefined;
    }
  }

  async put(key: string, entry: Omit<CachedBuild, 'layers'> & { layers: WrittenLayer[] }): Promise<void> {
    await this.#write(`${key}.json`, entry);
  }

  /** Best effort: a cache that cannot be written only costs speed next time. */
  async #write(file: string, entry: unknown): Promise<void> {
    const temp = join(this.dir, `.${file}.${randomUUID()}`);
    try {
      await mkdir(this.dir, { recursive: true, mode: PRIVATE_DIR });
      await writeFile(temp, JSON.stringify(entry), { mode: PRIVATE_FILE });
      await rename(temp, join(this.dir, file));
    } catch {
      await rm(temp, { force: true });
    }
  }
}

function hostFile(hostKey: string): string {
  return `host-${BuildCache.key(hostKey)}.json`;
}
