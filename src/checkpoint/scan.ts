import { Writable } from 'node:stream';
import { extract } from 'tar-stream';
import { decompressor, detectCompression } from '../compress/codec.js';
import { CkptError } from '../errors.js';
import type { TreeEntry } from './entry.js';

/** Which layer of a checkpoint image an entry belongs in. */
export type LayerRole = 'metadata' | 'pages' | 'rootfs-diff';

const PAGES_RE = /^(?:(?:checkpoint|pre-checkpoint(?:\/[^/]+)?)\/)?pages-\d+\.img$/;
const ROOTFS_DIFF_TOP = new Set(['rootfs-diff.tar', 'deleted.files', 'devshm-checkpoint.tar', 'volumes']);

export function layerRole(path: string): LayerRole {
  if (PAGES_RE.test(path)) return 'pages';
  const top = path.split('/', 1)[0] ?? path;
  return ROOTFS_DIFF_TOP.has(top) ? 'rootfs-diff' : 'metadata';
}

/** Files ckpt reads whole to learn what a checkpoint holds; all are small. */
const CAPTURED_TOP = new Set(['config.dump', 'spec.dump', 'deleted.files', 'bind.mounts', 'status.dump', 'stats-dump']);
const CAPTURED_CRIU_RE = /^(?:checkpoint\/)?(?:inventory|pstree|core-\d+)\.img$/;
const CAPTURE_LIMIT = 64 << 20;
/**
 * The container's spec and config: parsed, JSON takes some 40 times its size in memory, so a
 * 64 MiB one would cost gigabytes. A real one is tens of KiB; a Kubernetes object (the pod whose
 * spec it grows from) is at most 1.5 MiB.
 */
const CONTAINER_DUMP_LIMIT = 4 << 20;
/** The head of dump.log holds CRIU's version and the node's kernel; the rest is not needed. */
const LOG_HEAD = 64 << 10;

/** What a scan of a checkpoint tree found, before interpretation. */
export interface ScanResult {
  files: Map<string, Buffer>;
  /** Paths and sizes of the memory page files. */
  pages: Array<{ path: string; size: number }>;
  rootfsDiff?: { archiveBytes: number; files: number; bytes: number };
  /** Modification time of the CRIU inventory: when the dump was written. */
  inventoryTime?: Date;
  count: number;
  bytes: number;
}

/**
 * Watches the entries of a checkpoint tree go by and keeps what describes it: the small metadata
 * files, the sizes of the memory pages and a summary of the file-system diff. It never holds more
 * than the small files in memory.
 */
export class CheckpointScanner {
  readonly #subject: string;
  readonly #result: ScanResult = { files: new Map(), pages: [], count: 0, bytes: 0 };
  readonly #pending: Promise<void>[] = [];
  readonly #waiting = new Map<string, Array<(bytes: Buffer | undefined) => void>>();
  readonly #dirs = new Set<string>();

  constructor(subject: string) {
    this.#subject = subject;
  }

  /**
   * One of the small files ckpt reads whole, as soon as it has been read; undefined when the scan
   * ends (or fails) without it. Never settles if result() is never called: an abandoned scan.
   */
  captured(path: string): Promise<Buffer | undefined> {
    const bytes = this.#result.files.get(path);
    if (bytes) return Promise.resolve(bytes);
    return new Promise((resolve) => this.#waiting.set(path, [...(this.#waiting.get(path) ?? []), resolve]));
  }

  /**
   * Records an entry. Returns a writable that wants a copy of the entry's content, or undefined
   * when ckpt has no use for the bytes.
   */
  observe(entry: TreeEntry): Writable | undefined {
    const r = this.#result;
    // Layers may each list the directories their files are in (a pulled archive keeps them, so
    // that tar sets their times after their last file): a directory counts once.
    if (entry.type === 'directory') {
      if (this.#dirs.has(entry.path)) return undefined;
      this.#dirs.add(entry.path);
    }
    r.count++;
    r.bytes += entry.size;
    if (entry.type !== 'file') return undefined;
    if (/^(?:checkpoint\/)?inventory\.img$/.test(entry.path)) r.inventoryTime = entry.mtime;
    if (PAGES_RE.test(entry.path)) {
      r.pages.push({ path: entry.path, size: entry.size });
      return undefined;
    }
    if (entry.path === 'rootfs-diff.tar') return this.#track(summariseTar(entry.size, this.#subject, (s) => (r.rootfsDiff = s)));
    if (entry.path === 'dump.log') return this.#track(capture(entry.path, LOG_HEAD, false, (bytes) => this.#keep(entry.path, bytes), this.#subject));
    if (CAPTURED_TOP.has(entry.path) || CAPTURED_CRIU_RE.test(entry.path)) {
      const limit = entry.path === 'config.dump' || entry.path === 'spec.dump' ? CONTAINER_DUMP_LIMIT : CAPTURE_LIMIT;
      return this.#track(capture(entry.path, limit, true, (bytes) => this.#keep(entry.path, bytes), this.#subject));
    }
    return undefined;
  }

  #keep(path: string, bytes: Buffer): void {
    this.#result.files.set(path, bytes);
    for (const resolve of this.#waiting.get(path) ?? []) resolve(bytes);
    this.#waiting.delete(path);
  }

  #track(sink: Writable): Writable {
    const written = new Promise<void>((done, fail) => {
      sink.once('finish', done).once('error', fail);
    });
    // result() reports the failure; until it is called, a rejection nobody awaits yet must not
    // end the process as unhandled.
    written.catch(() => undefined);
    this.#pending.push(written);
    return sink;
  }

  /** Everything seen, once every copy handed out by observe() has been written to its end. */
  async result(): Promise<ScanResult> {
    try {
      await Promise.all(this.#pending);
      return this.#result;
    } finally {
      for (const waiters of this.#waiting.values()) for (const resolve of waiters) resolve(undefined);
      this.#waiting.clear();
    }
  }
}

function capture(path: string, limit: number, strict: boolean, keep: (bytes: Buffer) => void, subject: string): Writable {
  const chunks: Buffer[] = [];
  let size = 0;
  return new Writable({
    write(chunk: Buffer, _enc, done) {
      if (size < limit) chunks.push(chunk.subarray(0, limit - size));
      size += chunk.length;
      if (strict && size > limit) {
        done(new CkptError('INVALID_METADATA', `${path} is larger than ${limit >> 20} MiB`, { subject }));
        return;
      }
      done();
    },
    final(done) {
      keep(Buffer.concat(chunks));
      done();
    },
  });
}

/**
 * Counts the files and bytes a nested tar (rootfs-diff.tar) adds, reading it as it streams. Engines
 * differ in whether they compress it (containerd gzips it), so the compression is sniffed.
 */
function summariseTar(
  archiveBytes: number,
  subject: string,
  report: (summary: { archiveBytes: number; files: number; bytes: number }) => void,
): Writable {
  const parser = extract();
  let files = 0;
  let bytes = 0;
  parser.on('entry', (header, stream, next) => {
    if (header.type !== 'directory') files++;
    bytes += header.size ?? 0;
    stream.on('end', () => next());
    stream.resume();
  });
  let head: Buffer[] = [];
  let headSize = 0;
  let input: Writable | undefined;
  const start = () => {
    const kind = detectCompression(Buffer.concat(head));
    input = decompressor(kind === 'unknown' ? 'none' : kind);
    input.on('error', (err: Error) => parser.destroy(err));
    input.pipe(parser as unknown as Writable);
    for (const chunk of head) input.write(chunk);
    head = [];
  };
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (!input) {
        head.push(chunk);
        headSize += chunk.length;
        if (headSize < 512) return done();
        start();
        return done();
      }
      if (!input.write(chunk)) input.once('drain', () => done());
      else done();
    },
    final(done) {
      if (!input) start();
      parser.once('finish', () => {
        report({ archiveBytes, files, bytes });
        done();
      });
      input?.end();
    },
  });
  parser.on('error', (err: Error) =>
    sink.destroy(new CkptError('INVALID_METADATA', `rootfs-diff.tar is not a readable tar (${err.message})`, { subject, cause: err })),
  );
  return sink;
}
