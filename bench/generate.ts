/**
 * Generates a benchmark checkpoint in CRIU's layout, deterministic from a seed.
 *
 * The layout is that of an exported Podman checkpoint (`podman container checkpoint --export`):
 * every entry of ../shared/fixtures/podman-counter.tar (config.dump, spec.dump, stats-dump,
 * network.status, ctr.log, devshm-checkpoint.tar, rootfs-diff.tar, deleted.files and the small CRIU
 * images under checkpoint/) except its memory pages, which are replaced by `pages-1.img` ...
 * `pages-N.img` holding BENCH_SIZE bytes in all. The memory is a heap-like mix, decided per
 * 64 KiB run of pages: a quarter random bytes (compressed data, keys, hashes), half repetitive
 * structured text (JSON-ish records with varying ids and timestamps), a quarter sparse pages (zero
 * but for a few pointers).
 *
 * Variant `b` is a second checkpoint of the same process: the same files, names, sizes and
 * metadata, with exactly one 64 KiB run in every ten changed (10% of the pages, spread over all
 * of memory; a changed run keeps its kind of content).
 *
 * Each checkpoint is written once as a directory and as an uncompressed tar, streaming: no more
 * than a 64 KiB run is in memory. The keystream is AES-128-CTR (OpenSSL, several GB/s), with the
 * counter placed per run so that any run can be made on its own.
 *
 *   node bench/dist/generate.js OUTDIR [a|b]     (env BENCH_SIZE, BENCH_SEED, BENCH_PAGES_FILES)
 */
import { createCipheriv, createHash } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, existsSync, renameSync, writeFileSync, writeSync, utimesSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const RUN = 64 * 1024; // bytes of one run of pages of the same kind
const PAGE = 4096;

/**
 * The fixture whose metadata the checkpoint copies: BENCH_FIXTURE, else podman-counter.tar of the
 * shared fixtures, looked for as the tests look: $CKPT_FIXTURES, `shared/fixtures` beside the
 * checkout, this project's machines' /work/shared/fixtures (a clone anywhere else finds them).
 */
const FIXTURE_DIRS = [process.env.CKPT_FIXTURES, join(process.cwd(), '..', 'shared', 'fixtures'), '/work/shared/fixtures'];
export const FIXTURE =
  process.env.BENCH_FIXTURE ?? join(FIXTURE_DIRS.find((dir) => dir && existsSync(dir)) ?? '/work/shared/fixtures', 'podman-counter.tar');

export interface GenerateOptions {
  /** Bytes of memory pages in all (rounded down to 64 KiB). */
  size: number;
  seed: string;
  /** `a`: the checkpoint; `b`: the same process later, 10% of its pages changed. */
  variant: 'a' | 'b';
  /** How many pages-N.img files (processes); sizes halve: 1/2, 1/4, ..., the last two equal. */
  pagesFiles: number;
  /** Directory the checkpoint tree is written to (replaced). */
  dir?: string;
  /** Uncompressed tar written beside it (replaced). */
  tar?: string;
  fixture?: string;
}

export interface GenerateResult {
  dir?: string;
  tar?: string;
  memoryBytes: number;
  tarBytes: number;
  pagesFiles: Array<{ name: string; size: number }>;
  /** Bytes of memory that differ from variant a (0 for a). */
  changedBytes: number;
  seconds: number;
  sha256?: string;
}

/** Parses 1G, 512M, 4GiB, 1073741824. */
export function parseSize(text: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b)?$/i.exec(text.trim());
  if (!m) throw new Error(`bad size '${text}' (want e.g. 1G, 512M, 4GiB)`);
  const mult = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3, t: 1024 ** 4 }[(m[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g' | 't'];
  return Math.floor(Number(m[1]) * mult);
}

// ---- tar ------------------------------------------------------------------------------------

interface TarEntry {
  name: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  type: string; // '0' file, '5' directory
  uname: string;
  gname: string;
  data?: Buffer;
}

function readTar(buf: Buffer): TarEntry[] {
  const out: TarEntry[] = [];
  const str = (o: number, n: number) => buf.toString('latin1', o, o + n).replace(/\0.*$/s, '');
  const oct = (o: number, n: number) => parseInt(str(o, n).trim() || '0', 8);
  for (let off = 0; off + 512 <= buf.length; ) {
    if (buf.subarray(off, off + 512).every((b) => b === 0)) break;
    const prefix = str(off + 345, 155);
    const name = (prefix ? `${prefix}/` : '') + str(off, 100);
    const size = oct(off + 124, 12);
    const type = str(off + 156, 1) || '0';
    const e: TarEntry = {
      name,
      mode: oct(off + 100, 8),
      uid: oct(off + 108, 8),
      gid: oct(off + 116, 8),
      size,
      mtime: oct(off + 136, 12),
      type,
      uname: str(off + 265, 32),
      gname: str(off + 297, 32),
    };
    off += 512;
    if (type === '0') e.data = Buffer.from(buf.subarray(off, off + size));
    off += Math.ceil(size / 512) * 512;
    out.push(e);
  }
  return out;
}

function octal(n: number, width: number): string {
  return n.toString(8).padStart(width - 1, '0');
}

/** A ustar header; sizes beyond the octal field use the base-256 (GNU) form. */
function tarHeader(e: Omit<TarEntry, 'data'>): Buffer {
  const h = Buffer.alloc(512);
  if (Buffer.byteLength(e.name) > 100) throw new Error(`tar name too long: ${e.name}`);
  h.write(e.name, 0, 100, 'utf8');
  h.write(octal(e.mode & 0o7777, 8), 100, 'latin1');
  h.write(octal(e.uid, 8), 108, 'latin1');
  h.write(octal(e.gid, 8), 116, 'latin1');
  if (e.size < 8 ** 11) h.write(octal(e.size, 12), 124, 'latin1');
  else {
    h[124] = 0x80;
    let s = BigInt(e.size);
    for (let i = 135; i > 124; i--, s >>= 8n) h[i] = Number(s & 0xffn);
  }
  h.write(octal(e.mtime, 12), 136, 'latin1');
  h.write(' '.repeat(8), 148, 'latin1');
  h.write(e.type, 156, 'latin1');
  h.write('ustar\x0000', 257, 'latin1');
  h.write(e.uname, 265, 32, 'latin1');
  h.write(e.gname, 297, 32, 'latin1');
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${octal(sum, 7)}\0 `, 148, 'latin1');
  return h;
}

// ---- memory content -------------------------------------------------------------------------

type Kind = 'random' | 'text' | 'sparse';

/** Keystream for run `index` of stream `stream`: AES-128-CTR with the counter at that run. */
class Keystream {
  readonly #key: Buffer;
  readonly #zero = Buffer.alloc(RUN);
  constructor(seed: string, stream: string) {
    this.#key = createHash('sha256').update(`ckpt-bench/${seed}/${stream}`).digest().subarray(0, 16);
  }
  run(index: number): Buffer {
    const iv = Buffer.alloc(16);
    iv.writeUInt32BE(Math.floor(index / 2 ** 32), 4);
    iv.writeUInt32BE(index >>> 0, 8);
    return createCipheriv('aes-128-ctr', this.#key, iv).update(this.#zero);
  }
}

/** Kinds of the four runs in group `g`: one random, two text, one sparse, in a seeded order. */
function kindOf(plan: Buffer, run: number): Kind {
  const g = Math.floor(run / 4);
  const perm = PERMS[(plan[g % plan.length] ?? 0) % PERMS.length] ?? PERMS[0];
  return perm?.[run % 4] ?? 'text';
}
const PERMS: Kind[][] = (() => {
  const kinds: Kind[] = ['random', 'text', 'text', 'sparse'];
  const out = new Map<string, Kind[]>();
  const permute = (rest: Kind[], acc: Kind[]) => {
    if (!rest.length) out.set(acc.join(), acc);
    rest.forEach((k, i) => permute([...rest.slice(0, i), ...rest.slice(i + 1)], [...acc, k]));
  };
  permute(kinds, []);
  return [...out.values()];
})();

/** Record templates of a heap full of objects and strings; `#` are digits filled per record. */
const TEMPLATES = [
  '{"id":########,"user":"user_######","status":"active","ts":17########,"score":0.####}\n',
  '{"id":########,"user":"user_######","status":"idle","ts":17########,"tags":["cache","hot"]}\n',
  '2026-11-27T13:##:##.###Z INFO  [worker-##] c.e.app.RequestHandler - handled GET /api/v1/items/###### in ### ms\n',
  '2026-11-27T13:##:##.###Z DEBUG [pool-#-thread-#] o.h.SQL - select i.id, i.name, i.price from item i where i.id=######\n',
  'java.lang.String@########: "session-########-####-####-####-############"\0\0\0\0\0\0\0\0',
  '<item id="######" sku="SKU-########" price="###.##" currency="EUR" stock="####"/>\n',
  'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: ####\r\nX-Request-Id: ########\r\n\r\n',
  'key:product:######:views\0\0\0\0\0\0\0\0value:########\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0',
];
const TEMPLATE_BUFS = TEMPLATES.map((t) => Buffer.from(t, 'latin1'));
const EMPTY = Buffer.alloc(1);
const TEMPLATE_DIGITS = TEMPLATE_BUFS.map((b) => [...b.keys()].filter((i) => b[i] === 0x23));

function fillText(out: Buffer, ks: Buffer): void {
  let o = 0;
  let k = 0;
  while (o < out.length) {
    const t = ks.readUInt8(k++ & (RUN - 1)) & 7;
    const tpl = TEMPLATE_BUFS[t] ?? EMPTY;
    const digits = TEMPLATE_DIGITS[t] ?? [];
    const n = Math.min(tpl.length, out.length - o);
    tpl.copy(out, o, 0, n);
    for (const d of digits) {
      if (d >= n) break;
      out[o + d] = 0x30 + (ks.readUInt8(k++ & (RUN - 1)) % 10);
    }
    o += n;
  }
}

function fillSparse(out: Buffer, ks: Buffer): void {
  out.fill(0);
  for (let p = 0; p < out.length; p += PAGE) {
    // A few 8-byte pointers into a 64-bit heap, at 8-byte aligned places.
    const count = 2 + (ks.readUInt8(p) & 7);
    for (let i = 0; i < count; i++) {
      const at = p + ((ks.readUInt16LE(p + 2 + i * 2) & (PAGE / 8 - 1)) << 3);
      out.writeUInt32LE((ks.readUInt32LE(p + 64 + i * 4) & 0xfffff000) >>> 0, at);
      out.writeUInt32LE(0x00007f3a, at + 4);
    }
  }
}

/** Writes memory run by run; a 64 KiB run is the most it holds. */
class Memory {
  readonly #base: Keystream;
  readonly #changed: Keystream;
  readonly #plan: Buffer;
  readonly #choice: Buffer;
  readonly #variant: 'a' | 'b';
  readonly #buf = Buffer.alloc(RUN);
  changedBytes = 0;

  constructor(seed: string, variant: 'a' | 'b') {
    this.#base = new Keystream(seed, 'memory');
    this.#changed = new Keystream(seed, 'changed');
    this.#plan = new Keystream(seed, 'plan').run(0);
    this.#choice = new Keystream(seed, 'choice').run(0);
    this.#variant = variant;
  }

  /** Whether run `i` differs in variant b: exactly one run in every ten, at a seeded place. */
  changed(i: number): boolean {
    const group = Math.floor(i / 10);
    return this.#variant === 'b' && i % 10 === this.#choice.readUInt16LE((group * 2) % (RUN - 1)) % 10;
  }

  run(i: number): Buffer {
    const changed = this.changed(i);
    if (changed) this.changedBytes += RUN;
    const ks = (changed ? this.#changed : this.#base).run(i);
    switch (kindOf(this.#plan, i)) {
      case 'random':
        return ks;
      case 'text':
        fillText(this.#buf, ks);
        return this.#buf;
      case 'sparse':
        fillSparse(this.#buf, ks);
        return this.#buf;
    }
  }
}

/** Sizes of the pages files: halving shares (a main process and helpers), multiples of a run. */
export function pagesSizes(size: number, files: number): number[] {
  const runs = Math.floor(size / RUN);
  const shares = Array.from({ length: files }, (_, i) => (i === files - 1 ? 2 ** -(files - 1) : 2 ** -(i + 1)));
  const sizes = shares.map((s) => Math.floor(runs * s) * RUN);
  sizes[0] = (sizes[0] ?? 0) + runs * RUN - sizes.reduce((a, b) => a + b, 0);
  return sizes;
}

// ---- the checkpoint -----------------------------------------------------------------------

class Out {
  readonly #fd?: number;
  readonly #hash = createHash('sha256');
  bytes = 0;
  constructor(path?: string) {
    if (path) this.#fd = openSync(path, 'w');
  }
  write(b: Buffer): void {
    if (this.#fd === undefined) return;
    let off = 0;
    while (off < b.length) off += writeSync(this.#fd, b, off, b.length - off);
    this.#hash.update(b);
    this.bytes += b.length;
  }
  close(): string {
    if (this.#fd !== undefined) closeSync(this.#fd);
    return `sha256:${this.#hash.digest('hex')}`;
  }
}

export function generate(o: GenerateOptions): GenerateResult {
  const started = process.hrtime.bigint();
  const entries = readTar(readFileSync(o.fixture ?? FIXTURE));
  const sizes = pagesSizes(o.size, o.pagesFiles);
  const isPages = (n: string) => /^checkpoint\/pages-\d+\.img$/.test(n);
  const template = entries.find((e) => isPages(e.name));
  if (!template) throw new Error('the fixture has no checkpoint/pages-*.img');

  const tmpDir = o.dir ? `${o.dir}.tmp` : undefined;
  const tmpTar = o.tar ? `${o.tar}.tmp` : undefined;
  if (tmpDir) rmSync(tmpDir, { recursive: true, force: true });
  if (tmpDir) mkdirSync(tmpDir, { recursive: true });
  const tar = new Out(tmpTar);
  const memory = new Memory(o.seed, o.variant);
  const dirTimes: Array<[string, number]> = [];
  let runIndex = 0;

  const pad = (n: number) => {
    const r = n % 512;
    if (r) tar.write(Buffer.alloc(512 - r));
  };
  const emitPages = () => {
    sizes.forEach((size, i) => {
      const name = `checkpoint/pages-${i + 1}.img`;
      tar.write(tarHeader({ ...template, name, size }));
      const fd = tmpDir ? openSync(join(tmpDir, name), 'w', template.mode) : undefined;
      for (let off = 0; off < size; off += RUN) {
        const chunk = memory.run(runIndex++);
        tar.write(chunk);
        if (fd !== undefined) {
          let w = 0;
          while (w < chunk.length) w += writeSync(fd, chunk, w, chunk.length - w);
        }
      }
      if (fd !== undefined && tmpDir) {
        closeSync(fd);
        utimesSync(join(tmpDir, name), template.mtime, template.mtime);
      }
    });
  };

  let pagesDone = false;
  for (const e of entries) {
    if (isPages(e.name)) {
      if (!pagesDone) emitPages();
      pagesDone = true;
      continue;
    }
    tar.write(tarHeader(e));
    if (e.data) {
      tar.write(e.data);
      pad(e.data.length);
    }
    if (tmpDir) {
      const path = join(tmpDir, e.name.replace(/\/$/, ''));
      if (e.type === '5') {
        mkdirSync(path, { recursive: true, mode: e.mode });
        dirTimes.push([path, e.mtime]);
      } else {
        mkdirSync(dirname(path), { recursive: true });
        writeFileSync(path, e.data ?? Buffer.alloc(0), { mode: e.mode });
        utimesSync(path, e.mtime, e.mtime);
      }
    }
  }
  tar.write(Buffer.alloc(1024));
  const sha256 = tar.close();
  for (const [path, mtime] of dirTimes.reverse()) utimesSync(path, mtime, mtime);
  if (tmpDir && o.dir) {
    rmSync(o.dir, { recursive: true, force: true });
    renameSync(tmpDir, o.dir);
  }
  if (tmpTar && o.tar) renameSync(tmpTar, o.tar);
  return {
    dir: o.dir,
    tar: o.tar,
    memoryBytes: sizes.reduce((a, b) => a + b, 0),
    tarBytes: tar.bytes,
    pagesFiles: sizes.map((size, i) => ({ name: `checkpoint/pages-${i + 1}.img`, size })),
    changedBytes: memory.changedBytes,
    seconds: Number(process.hrtime.bigint() - started) / 1e9,
    sha256: o.tar ? sha256 : undefined,
  };
}

/**
 * Makes (or finds, when a stamp with the same parameters is there) checkpoint `variant` in
 * `outDir`: `<outDir>/<name>/` and `<outDir>/<name>.tar`.
 */
export function ensureCheckpoint(outDir: string, name: string, opts: Omit<GenerateOptions, 'dir' | 'tar'>, forms: { dir: boolean; tar: boolean }): GenerateResult {
  const dir = forms.dir ? join(outDir, name) : undefined;
  const tar = forms.tar ? join(outDir, `${name}.tar`) : undefined;
  const stampPath = join(outDir, `${name}.json`);
  const params = JSON.stringify({ format: 1, ...opts, fixture: opts.fixture ?? FIXTURE, forms });
  if (existsSync(stampPath)) {
    try {
      const stamp = JSON.parse(readFileSync(stampPath, 'utf8')) as { params: string; result: GenerateResult };
      if (stamp.params === params && (!dir || existsSync(dir)) && (!tar || existsSync(tar))) return { ...stamp.result, seconds: 0 };
    } catch {
      // regenerate
    }
  }
  mkdirSync(outDir, { recursive: true });
  rmSync(stampPath, { force: true });
  const result = generate({ ...opts, dir, tar });
  writeFileSync(stampPath, JSON.stringify({ params, result }, null, 2));
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [outDir, variant = 'a'] = process.argv.slice(2);
  if (!outDir || (variant !== 'a' && variant !== 'b')) {
    console.error('usage: node bench/dist/generate.js OUTDIR [a|b]   (env BENCH_SIZE=1G BENCH_SEED=1 BENCH_PAGES_FILES=4)');
    process.exit(2);
  }
  const size = parseSize(process.env.BENCH_SIZE ?? '1G');
  const result = generate({
    size,
    seed: process.env.BENCH_SEED ?? '1',
    variant,
    pagesFiles: Number(process.env.BENCH_PAGES_FILES ?? 4),
    dir: join(outDir, `checkpoint-${variant}`),
    tar: join(outDir, `checkpoint-${variant}.tar`),
  });
  console.log(JSON.stringify(result, null, 2));
}
