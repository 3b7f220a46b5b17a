/**
 * The ckpt benchmark (issue 5): ckpt against the tools a user would otherwise use, in one run,
 * on one generated checkpoint, against one local registry.
 *
 *   make bench                      (or: npx tsc -p bench/tsconfig.json && node node_modules/.cache/ckpt-bench/run.js)
 *
 * Environment:
 *   BENCH_SIZE=1G         memory of the checkpoint (the tar is ~120 KB larger)
 *   BENCH_SEED=1          seed of the generated memory
 *   BENCH_PAGES_FILES=4   pages-N.img files (processes); sizes 1/2, 1/4, 1/8, 1/8
 *   BENCH_RUNS=3          runs of every timed measure; the median is reported
 *   BENCH_RSS_SIZES=      extra sizes (e.g. 4G) at which only ckpt push zstd and ckpt pull run once, for peak RSS
 *   BENCH_ONLY=           comma list of groups: push,pull,repush,inspect,rss,profile (default: all)
 *   BENCH_WORK=bench/work scratch space (~2.5x BENCH_SIZE, plus 2x each RSS size); bound into the e2e root as /bench
 *   BENCH_ROOT_WAIT=900   seconds to wait for the e2e root's lock (an e2e run using it) before running without it
 *   BENCH_KEEP=           keep the registry's storage and the pulled outputs
 *   BENCH_FIXTURE=        the checkpoint whose metadata the generated one copies (default: the shared podman-counter.tar)
 *   BENCH_REGISTRY=root   the docker-registry run: the e2e root's (Debian 13, distribution 2.8.3, Go 1.24) or the
 *                         host's (`host`: Debian 12, 2.8.2, Go 1.19, whose sha256 does not use the CPU's SHA
 *                         extensions and takes twice the CPU for the same upload)
 *
 * Writes bench/results/latest.json and bench/results/latest.md (and a timestamped copy of the JSON in
 * BENCH_WORK/history/), and CPU profiles of one extra push and pull in bench/results/profiles/.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { copyFileSync, cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ensureCheckpoint, type GenerateResult, parseSize } from './generate.js';
import { type Summary, summarise } from './profile.js';

// ---- configuration ----------------------------------------------------------------------------

const REPO = process.cwd();
/** The CLI measured: a copy of dist/ taken when the run starts, so a rebuild during the run changes nothing. */
let CKPT = join(REPO, 'dist', 'cli', 'ckpt.js');
const env = process.env;
const SIZE = parseSize(env.BENCH_SIZE ?? '1G');
const SEED = env.BENCH_SEED ?? '1';
const PAGES_FILES = Number(env.BENCH_PAGES_FILES ?? 4);
const RUNS = Math.max(1, Number(env.BENCH_RUNS ?? 3));
const RSS_SIZES = (env.BENCH_RSS_SIZES ?? '').split(',').map((s) => s.trim()).filter(Boolean);
const ONLY = new Set((env.BENCH_ONLY ?? 'push,pull,repush,inspect,rss,profile').split(',').map((s) => s.trim()));
const WORK = resolve(env.BENCH_WORK ?? join(REPO, 'bench', 'work'));
const ROOT_WAIT = Number(env.BENCH_ROOT_WAIT ?? 900);
const KEEP = Boolean(env.BENCH_KEEP);
const REGISTRY = env.BENCH_REGISTRY ?? 'root';
if (REGISTRY !== 'root' && REGISTRY !== 'host') throw new Error(`BENCH_REGISTRY must be root or host (got ${REGISTRY})`);
const RESULTS = join(REPO, 'bench', 'results');
const MB = 1e6;
/** ckpt's default zstd level, from the build under test: zstd alone is measured at the same level. */
const ZSTD_LEVEL = (
  (await import(pathToFileURL(join(REPO, 'dist', 'compress', 'codec.js')).href)) as { DEFAULT_LEVEL: Record<string, number> }
).DEFAULT_LEVEL.zstd as number;
const MiB = 1024 * 1024;

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

function human(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(2)} GiB`;
  if (bytes >= MiB) return `${(bytes / MiB).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

function sizeLabel(bytes: number): string {
  return bytes % 1024 ** 3 === 0 ? `${bytes / 1024 ** 3}GiB` : `${Math.round(bytes / MiB)}MiB`;
}

// ---- processes ----------------------------------------------------------------------------

interface Ran {
  seconds: number;
  stdout: string;
  stderr: string;
  code: number;
  rssKb?: number;
  /** User plus system CPU seconds of the command and its children (GNU time). */
  cpuSeconds?: number;
}

/** GNU time measures peak RSS (Debian package `time`); without it the RSS lines say "not measured". */
const GNU_TIME = existsSync('/usr/bin/time');

/** Runs a command, timing it from spawn to exit; with `rss`, under /usr/bin/time for the peak RSS. */
function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; rss?: boolean; allowFail?: boolean } = {}): Promise<Ran> {
  const rssFile = opts.rss && GNU_TIME ? join(WORK, `.rss-${process.pid}-${Math.random().toString(36).slice(2)}`) : undefined;
  const [c, a] = rssFile ? ['/usr/bin/time', ['-f', '%M %U %S', '-o', rssFile, cmd, ...args]] : [cmd, args];
  return new Promise((ok, fail) => {
    const started = process.hrtime.bigint();
    const child = spawn(c, a, { env: { ...env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (b: Buffer) => out.push(b));
    child.stderr.on('data', (b: Buffer) => err.push(b));
    child.on('error', fail);
    child.on('close', (code) => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const r: Ran = { seconds, stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString(), code: code ?? -1 };
      if (rssFile) {
        try {
          const lines = readFileSync(rssFile, 'utf8').trim().split('\n');
          const [rss, user, sys] = (lines.at(-1) ?? '').split(' ').map(Number);
          r.rssKb = rss;
          if (user !== undefined && sys !== undefined) r.cpuSeconds = Math.round((user + sys) * 100) / 100;
        } catch {
          // no RSS: the command did not start
        }
        rmSync(rssFile, { force: true });
      }
      if (r.code !== 0 && !opts.allowFail) {
        fail(new Error(`${cmd} ${args.join(' ')} exited ${r.code}: ${(r.stderr || r.stdout).trim().split('\n').slice(-5).join(' | ')}`));
      } else ok(r);
    });
  });
}

const ckpt = (args: string[], env2: NodeJS.ProcessEnv = {}) => run('node', [CKPT, ...args], { env: env2, rss: true });

/** Runs bash on the host (under GNU time, for its CPU seconds). */
const sh = (script: string) => run('/bin/bash', ['-euo', 'pipefail', '-c', script], { rss: true });

/** What one profiled run left: a profile per thread, the main thread first. */
interface Profiled {
  name: string;
  seconds: number;
  threads: Array<{ file: string } & Summary>;
}

const PROFILES = join(RESULTS, 'profiles');

/**
 * One more ckpt run, not counted among the samples, under `--cpu-prof`: its profiles replace
 * `results/profiles/<name>.thread<N>.cpuprofile` (thread 0 is the main thread, then the workers in
 * the order they started), so the profiles beside a table are always of the code it measured.
 */
async function profiled(name: string, args: string[]): Promise<Profiled> {
  const dir = join(WORK, `profile-${name}`);
  rmSync(dir, { recursive: true, force: true });
  const x = await run('node', ['--cpu-prof', '--cpu-prof-dir', dir, CKPT, ...args]);
  // CPU.<date>.<time>.<pid>.<thread id>.<sequence>.cpuprofile
  const threadId = (file: string) => Number(file.split('.').at(-3));
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .sort((p, q) => threadId(p) - threadId(q));
  mkdirSync(PROFILES, { recursive: true });
  for (const old of readdirSync(PROFILES)) if (old.startsWith(`${name}.thread`)) rmSync(join(PROFILES, old));
  const threads = files.map((f, i) => {
    const file = join(PROFILES, `${name}.thread${i}.cpuprofile`);
    copyFileSync(join(dir, f), file);
    return { file: file.slice(REPO.length + 1), ...summarise(file, 5) };
  });
  rmSync(dir, { recursive: true, force: true });
  return { name, seconds: x.seconds, threads };
}

// ---- the e2e root (buildah, podman, oras) -----------------------------------------------------

class Root {
  state?: string;
  readonly enter = join(REPO, 'test', 'e2e', 'enter.sh');
  shared = false;
  constructor(readonly path: string) {}

  /** Holds the root's lock for the whole run (a session), waiting for an e2e run that holds it. */
  async start(): Promise<void> {
    const state = join(WORK, '.root-session');
    const deadline = Date.now() + ROOT_WAIT * 1000;
    for (let announced = false; ; ) {
      const r = await run('bash', [this.enter, '--root', this.path, '--bind', `${WORK}:/bench`, '--start', state], { allowFail: true });
      if (r.code === 0) {
        this.state = state;
        return;
      }
      if (!/another end-to-end session/.test(r.stderr) || Date.now() > deadline) {
        log(`could not hold the e2e root (${r.stderr.trim()}); running its tools one-shot, beside whoever uses it`);
        this.shared = true;
        return;
      }
      if (!announced) log(`the e2e root is in use (an e2e run holds its lock); waiting up to ${ROOT_WAIT} s`);
      announced = true;
      await new Promise((ok) => setTimeout(ok, 5000));
    }
  }

  async stop(): Promise<void> {
    if (this.state) await run('bash', [this.enter, '--stop', this.state], { allowFail: true });
    this.state = undefined;
  }

  /**
   * Runs a bash script inside the root. The script brackets what is timed with `@@t0` and `@@t1`
   * (`mark` lines), so entering the root costs nothing to the tool measured.
   */
  async exec(script: string): Promise<{ seconds: number; stdout: string }> {
    const body = `set -euo pipefail\nmark() { echo "@@$1 $(date +%s%N)"; }\ncd /bench\n${script}`;
    const args = this.state
      ? [this.enter, '--session', this.state, '--', '/bin/bash', '-c', body]
      : [this.enter, '--root', this.path, '--bind', `${WORK}:/bench`, '--', '/bin/bash', '-c', body];
    const r = await run('bash', args);
    const t0 = /@@t0 (\d+)/.exec(r.stdout);
    const t1 = /@@t1 (\d+)/.exec(r.stdout);
    const seconds = t0?.[1] && t1?.[1] ? Number(BigInt(t1[1]) - BigInt(t0[1])) / 1e9 : r.seconds;
    return { seconds, stdout: r.stdout };
  }
}

// ---- registry and a counting proxy ------------------------------------------------------------

function freePort(): Promise<number> {
  return new Promise((ok, fail) => {
    const s = createServer();
    s.once('error', fail);
    s.listen(0, '127.0.0.1', () => {
      const addr = s.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => ok(port));
    });
  });
}

/**
 * How to run docker-registry: the host's, or the e2e root's with the root's own loader and libc
 * (run on the host, so that its process is the one whose CPU is counted, in the host's network).
 */
function registryCommand(rootPath: string | undefined): string[] {
  if (REGISTRY === 'host' || !rootPath) return ['docker-registry'];
  const lib = join(rootPath, 'usr', 'lib', 'x86_64-linux-gnu');
  return [join(lib, 'ld-linux-x86-64.so.2'), '--library-path', lib, join(rootPath, 'usr', 'bin', 'docker-registry')];
}

async function startRegistry(dir: string, command: string[]): Promise<{ port: number; child: ChildProcess }> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(join(dir, 'data'), { recursive: true });
  const port = await freePort();
  const config = join(dir, 'config.yml');
  writeFileSync(
    config,
    [
      'version: 0.1',
      'log:',
      '  level: error',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(dir, 'data')}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  );
  const [bin = 'docker-registry', ...args] = command;
  const child = spawn(bin, [...args, 'serve', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  let errText = '';
  child.stderr?.on('data', (b: Buffer) => (errText += b.toString()));
  for (let i = 0; i < 100; i++) {
    try {
      const res = await fetch(`http://127.0.0.1:${port}/v2/`);
      if (res.status === 200) return { port, child };
    } catch {
      // not up yet
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  child.kill();
  throw new Error(`docker-registry did not start on 127.0.0.1:${port}: ${errText.trim()}`);
}

/** Bytes that went through the proxy since the last reset. */
interface Counts {
  /** Client to registry, everything (TLS probes, headers, bodies). */
  up: number;
  /** Registry to client, everything. */
  down: number;
  /** Request bodies of blob uploads (POST/PATCH/PUT .../blobs/uploads/...): layer and config bytes. */
  blobUp: number;
  /** Request bodies of manifest PUTs. */
  manifestUp: number;
  requests: Record<string, number>;
}

/**
 * A TCP proxy on loopback that counts what a client sends to the registry, parsing HTTP/1.1
 * requests just enough (Content-Length and chunked bodies) to tell blob bytes from the rest.
 * Anything that is not HTTP (ckpt's TLS probe) is counted raw.
 */
class CountingProxy {
  counts: Counts = CountingProxy.zero();
  server?: Server;
  port = 0;
  readonly #sockets = new Set<Socket>();
  constructor(readonly upstream: number) {}

  static zero(): Counts {
    return { up: 0, down: 0, blobUp: 0, manifestUp: 0, requests: {} };
  }

  reset(): Counts {
    const c = this.counts;
    this.counts = CountingProxy.zero();
    return c;
  }

  async start(): Promise<void> {
    this.server = createServer((client) => {
      const upstream = connect(this.upstream, '127.0.0.1');
      this.#sockets.add(client).add(upstream);
      const parser = new RequestCounter(this);
      client.on('data', (b: Buffer) => {
        this.counts.up += b.length;
        parser.feed(b);
        if (!upstream.write(b)) client.pause();
      });
      upstream.on('drain', () => client.resume());
      upstream.on('data', (b: Buffer) => {
        this.counts.down += b.length;
        if (!client.write(b)) upstream.pause();
      });
      client.on('drain', () => upstream.resume());
      const end = () => {
        client.destroy();
        upstream.destroy();
        this.#sockets.delete(client);
        this.#sockets.delete(upstream);
      };
      client.on('close', end).on('error', end);
      upstream.on('close', end).on('error', end);
      client.on('end', () => upstream.end());
      upstream.on('end', () => client.end());
    });
    await new Promise<void>((ok) => this.server?.listen(0, '127.0.0.1', ok));
    const addr = this.server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : 0;
  }

  async stop(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise((ok) => this.server?.close(ok));
  }
}

class RequestCounter {
  #head = Buffer.alloc(0);
  #state: 'head' | 'body' | 'chunk-size' | 'chunk-data' | 'chunk-crlf' | 'raw' = 'head';
  #remaining = 0;
  #kind: 'blob' | 'manifest' | 'other' = 'other';
  #line = '';
  #last = false;
  constructor(readonly proxy: CountingProxy) {}

  #count(n: number): void {
    const c = this.proxy.counts;
    if (this.#kind === 'blob') c.blobUp += n;
    else if (this.#kind === 'manifest') c.manifestUp += n;
  }

  feed(b: Buffer): void {
    let i = 0;
    while (i < b.length) {
      switch (this.#state) {
        case 'raw':
          return;
        case 'head': {
          const joined = this.#head.length ? Buffer.concat([this.#head, b.subarray(i)]) : b.subarray(i);
          if (!/^[A-Z]/.test(joined.toString('latin1', 0, 1))) {
            this.#state = 'raw';
            return;
          }
          const end = joined.indexOf('\r\n\r\n');
          if (end < 0) {
            this.#head = Buffer.from(joined);
            if (this.#head.length > 1 << 16) this.#state = 'raw';
            return;
          }
          const consumed = end + 4 - this.#head.length;
          const head = joined.toString('latin1', 0, end);
          this.#head = Buffer.alloc(0);
          i += consumed;
          const [line = '', ...headers] = head.split('\r\n');
          const [method = '', path = ''] = line.split(' ');
          this.#kind = /\/blobs\/uploads\//.test(path) ? 'blob' : /\/manifests\//.test(path) && method === 'PUT' ? 'manifest' : 'other';
          const key = `${method} ${this.#kind === 'other' ? path.replace(/\/v2\/[^?]*\/(blobs|manifests)\/.*/, '/v2/…/$1/…') : this.#kind}`;
          this.proxy.counts.requests[key] = (this.proxy.counts.requests[key] ?? 0) + 1;
          const h = new Map(headers.map((x) => [x.slice(0, x.indexOf(':')).trim().toLowerCase(), x.slice(x.indexOf(':') + 1).trim()]));
          if (/chunked/i.test(h.get('transfer-encoding') ?? '')) {
            this.#state = 'chunk-size';
            this.#line = '';
          } else {
            this.#remaining = Number(h.get('content-length') ?? 0);
            this.#state = this.#remaining > 0 ? 'body' : 'head';
          }
          break;
        }
        case 'body': {
          const n = Math.min(this.#remaining, b.length - i);
          this.#count(n);
          this.#remaining -= n;
          i += n;
          if (this.#remaining === 0) this.#state = 'head';
          break;
        }
        case 'chunk-size': {
          const nl = b.indexOf(0x0a, i);
          if (nl < 0) {
            this.#line += b.toString('latin1', i);
            return;
          }
          this.#line += b.toString('latin1', i, nl);
          i = nl + 1;
          const size = parseInt(this.#line.trim().split(';')[0] ?? '0', 16);
          this.#line = '';
          if (size === 0) {
            // Last chunk; assumes no trailers: the empty line follows.
            this.#remaining = 2;
            this.#state = 'chunk-crlf';
            this.#last = true;
          } else {
            this.#remaining = size;
            this.#state = 'chunk-data';
          }
          break;
        }
        case 'chunk-data': {
          const n = Math.min(this.#remaining, b.length - i);
          this.#count(n);
          this.#remaining -= n;
          i += n;
          if (this.#remaining === 0) {
            this.#remaining = 2;
            this.#state = 'chunk-crlf';
          }
          break;
        }
        case 'chunk-crlf': {
          const n = Math.min(this.#remaining, b.length - i);
          this.#remaining -= n;
          i += n;
          if (this.#remaining === 0) {
            this.#state = this.#last ? 'head' : 'chunk-size';
            this.#last = false;
          }
          break;
        }
      }
    }
  }
}

// ---- measures ---------------------------------------------------------------------------------

interface Sample {
  seconds: number;
  /** CPU seconds (user + system) the command used; host commands only. */
  cpuSeconds?: number;
  /** 1-minute load average when the sample ended: other work on the machine skews times. */
  load1?: number;
  rssKb?: number;
  upBytes?: number;
  blobUpBytes?: number;
  downBytes?: number;
  fetchedBytes?: number;
  layerBytes?: number;
  /** CPU seconds the registry process used during the sample: on one machine it shares the cores. */
  registryCpuSeconds?: number;
}

interface Measure {
  id: string;
  label: string;
  tool: 'ckpt' | 'alternative' | 'bound';
  size: number;
  samples: Sample[];
  error?: string;
  note?: string;
}

const measures = new Map<string, Measure>();

function measure(id: string, label: string, tool: Measure['tool'], size = SIZE): Measure {
  let m = measures.get(id);
  if (!m) measures.set(id, (m = { id, label, tool, size, samples: [] }));
  return m;
}

function median(xs: number[]): number | undefined {
  if (!xs.length) return undefined;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid] : ((s[mid - 1] ?? 0) + (s[mid] ?? 0)) / 2;
}

function med(id: string, field: keyof Sample = 'seconds'): number | undefined {
  const m = measures.get(id);
  return m ? median(m.samples.map((s) => s[field]).filter((x): x is number => typeof x === 'number')) : undefined;
}

function max(id: string, field: keyof Sample): number | undefined {
  const xs = (measures.get(id)?.samples ?? []).map((s) => s[field]).filter((x): x is number => typeof x === 'number');
  return xs.length ? Math.max(...xs) : undefined;
}

/** The registry process, whose CPU time each sample records. */
let registryPid: number | undefined;

/** USER_HZ: what /proc counts CPU time in; 100 on every Linux architecture we run on. */
const CLOCK_TICKS = 100;

/** User plus system CPU seconds of a process so far (all its threads), from /proc. */
function processCpuSeconds(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    // Fields after the parenthesised command name: state is field 3, utime 14 and stime 15.
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? [];
    return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

/** Records one sample; a failure is recorded on the measure and does not stop the run. */
/**
 * Reads files, and every file under directories, once. This VM drops page cache within minutes
 * (its balloon takes memory back), so a checkpoint written earlier in the run may be read from
 * disk by one tool and from memory by the next: every measure starts with its input cached, as
 * just after CRIU wrote it (and, for pulls, with the registry's blobs cached).
 */
async function warm(paths: string[]): Promise<void> {
  if (paths.length > 0) await run('sh', ['-c', 'find "$@" -type f -exec cat {} + >/dev/null', 'warm', ...paths]);
}

/** `host:port/name:tag` → `name`. */
function repositoryOf(reference: string): string {
  const path = reference.slice(reference.indexOf('/') + 1);
  return path.slice(0, path.lastIndexOf(':'));
}

/** The blob files of a repository in the bench registry's storage: what a pull of it reads. */
function registryBlobs(repository: string): string[] {
  const v2 = join(WORK, 'registry', 'data', 'docker', 'registry', 'v2');
  const layers = join(v2, 'repositories', repository, '_layers', 'sha256');
  if (!existsSync(layers)) return [];
  return readdirSync(layers).map((hex) => join(v2, 'blobs', 'sha256', hex.slice(0, 2), hex, 'data'));
}

async function sample(m: Measure, f: () => Promise<Sample>, inputs: string[] = []): Promise<Sample | undefined> {
  try {
    // What the previous tool wrote (buildah's storage, a pulled tree, the registry's blobs) is
    // written back now, not during this measure.
    await run('sync', []);
    await warm(inputs);
    const registryBefore = processCpuSeconds(registryPid);
    const s = await f();
    const registryAfter = processCpuSeconds(registryPid);
    if (registryBefore !== undefined && registryAfter !== undefined) s.registryCpuSeconds = Math.round((registryAfter - registryBefore) * 100) / 100;
    s.load1 = Math.round((loadavg()[0] ?? 0) * 100) / 100;
    m.samples.push(s);
    log(`${m.label}: ${s.seconds.toFixed(2)} s${s.rssKb ? `, RSS ${(s.rssKb / 1024).toFixed(0)} MiB` : ''}${s.blobUpBytes !== undefined ? `, blob bytes up ${human(s.blobUpBytes)}` : ''}${s.fetchedBytes !== undefined ? `, fetched ${human(s.fetchedBytes)}` : ''}`);
    return s;
  } catch (err) {
    m.error = (err as Error).message.slice(0, 400);
    log(`${m.label}: FAILED ${m.error}`);
    return undefined;
  }
}

function dirBytes(dir: string): number {
  let total = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) total += dirBytes(p);
    else if (e.isFile()) total += statSync(p).size;
  }
  return total;
}

/** Bash defining `at`: the absolute `Location` of the response headers on its input. */
function locationOf(registry: string): string {
  return `at() { tr -d '\\r' | sed -n 's/^[Ll]ocation: //p' | { read -r l; case $l in http*) echo "$l" ;; *) echo "http://${registry}$l" ;; esac; }; }`;
}

/** Bash that starts an upload to `repository`: `$loc` is where its bytes go. */
function uploadStart(registry: string, repository: string): string {
  return `${locationOf(registry)}
    loc=$(curl -sS -o /dev/null -D - -X POST http://${registry}/v2/${repository}/blobs/uploads/ | at)`;
}

/** Bash that ends the upload at `$loc` with `digest`, failing unless the registry answers 201; the body, if any, is the file `body`. */
function uploadEnd(digest: string, body?: string): string {
  return `case $loc in *\\?*) sep='&' ;; *) sep='?' ;; esac
    code=$(curl -sS -o /dev/null -w '%{http_code}' -X PUT -H 'Content-Type: application/octet-stream' ${body ? `-T "${body}"` : ''} "$loc\${sep}digest=${digest}")
    [ "$code" = 201 ] || { echo "PUT of ${digest} answered $code" >&2; exit 1; }`;
}

/**
 * Bash defining `up FILE DIGEST`: uploads FILE to `repository` as one blob, the monolithic way
 * (POST, then PUT `?digest=` with the body).
 */
function curlUpload(registry: string, repository: string): string {
  return `up() {
    ${uploadStart(registry, repository)}
    ${uploadEnd('$2', '$1')}
  }`;
}

/**
 * Bash doing the work a zstd push cannot avoid, with native tools and nothing else: OpenSSL's
 * sha256 of the tar (the diff_id) and of the blob, `zstd -T2` at ckpt's level, and the blob
 * streamed to the registry in one PATCH, then PUT `?digest=`. One blob, no layers, no manifest:
 * what this machine allows any push, measured rather than added up.
 */
function pipelinePush(registry: string, repository: string, tar: string): string {
  return `${uploadStart(registry, repository)}
    d=$(mktemp -d); trap 'rm -rf "$d"' EXIT
    mkfifo "$d/tar" "$d/blob"
    openssl dgst -sha256 -r < "$d/tar" > "$d/diff" & tarsum=$!
    openssl dgst -sha256 -r < "$d/blob" > "$d/sum" & blobsum=$!
    loc=$(tee "$d/tar" < ${tar} | zstd -q -T2 -${ZSTD_LEVEL} -c | tee "$d/blob" | curl -sS -o /dev/null -D - -X PATCH -H 'Content-Type: application/octet-stream' -T - "$loc" | at)
    wait $tarsum $blobsum
    ${uploadEnd('sha256:$(cut -c1-64 "$d/sum")')}`;
}

/** The layers of the one image in an OCI layout, with their blob files. */
function layoutLayers(layout: string): Array<{ digest: string; file: string }> {
  const blob = (digest: string) => join(layout, 'blobs', ...digest.split(':'));
  const index = JSON.parse(readFileSync(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
  const root = index.manifests[0]?.digest;
  if (!root) throw new Error(`${layout} holds no image`);
  const manifest = JSON.parse(readFileSync(blob(root), 'utf8')) as { layers: Array<{ digest: string }> };
  return manifest.layers.map((l) => ({ digest: l.digest, file: blob(l.digest) }));
}

function layerBytes(stdout: string): number | undefined {
  try {
    const j = JSON.parse(stdout) as { layers?: Array<{ size: number }> };
    return j.layers?.reduce((a, l) => a + l.size, 0);
  } catch {
    return undefined;
  }
}

// ---- the run ----------------------------------------------------------------------------------

async function main(): Promise<void> {
  if (!existsSync(CKPT)) throw new Error(`${CKPT} is missing: build first (make build)`);
  mkdirSync(WORK, { recursive: true });
  mkdirSync(RESULTS, { recursive: true });
  // Under node_modules/ (which linters skip); its imports resolve to the project's node_modules.
  const snapshot = join(REPO, 'node_modules', '.cache', 'ckpt-bench', 'snapshot');
  rmSync(snapshot, { recursive: true, force: true });
  mkdirSync(snapshot, { recursive: true });
  cpSync(join(REPO, 'dist'), join(snapshot, 'dist'), { recursive: true });
  copyFileSync(join(REPO, 'package.json'), join(snapshot, 'package.json'));
  const distBuilt = statSync(CKPT).mtime.toISOString();
  CKPT = join(snapshot, 'dist', 'cli', 'ckpt.js');
  const startedAt = new Date();
  const load0 = loadavg();
  const hasPull = (await run('node', [CKPT, 'pull', '--help'], { allowFail: true })).code === 0;
  if (!hasPull) log('this ckpt has no pull command: the ckpt pull measures are skipped');
  if (!GNU_TIME) log('/usr/bin/time is missing (apt-get install time): peak RSS is not measured');

  // Checkpoints.
  const dataDir = join(WORK, `data-${sizeLabel(SIZE)}-seed${SEED}-files${PAGES_FILES}`);
  const gen = { size: SIZE, seed: SEED, pagesFiles: PAGES_FILES };
  log(`generating checkpoints (${human(SIZE)} of memory, seed ${SEED}) in ${dataDir}`);
  const a = ensureCheckpoint(dataDir, 'a', { ...gen, variant: 'a' }, { dir: true, tar: true });
  const b = ONLY.has('repush') ? ensureCheckpoint(dataDir, 'b', { ...gen, variant: 'b' }, { dir: true, tar: true }) : undefined;
  log(`checkpoint a: ${human(a.tarBytes)} tar${a.seconds ? `, made in ${a.seconds.toFixed(1)} s` : ' (found)'}${b ? `; b: ${human(b.changedBytes)} changed${b.seconds ? `, made in ${b.seconds.toFixed(1)} s` : ''}` : ''}`);
  await sh('sync'); // the generated files' writeback does not slow the first measures
  const rel = (p: string) => p.slice(WORK.length + 1); // path inside the root, under /bench
  const tarA = a.tar ?? '';
  const dirA = a.dir ?? '';

  const rootPath = (await run('bash', [join(REPO, 'test', 'e2e', 'root.sh'), '--path'], { allowFail: true })).stdout.trim();
  const root = rootPath ? new Root(rootPath) : undefined;
  if (!root) log('no e2e root (test/e2e/root.sh --path): the buildah, podman and oras measures are skipped');

  const registryCmd = registryCommand(rootPath || undefined);
  const registry = await startRegistry(join(WORK, 'registry'), registryCmd);
  registryPid = registry.child.pid;
  const R = `127.0.0.1:${registry.port}`;
  const proxy = new CountingProxy(registry.port);
  await proxy.start();
  const P = `127.0.0.1:${proxy.port}`;
  log(`registry on ${R}, counting proxy on ${P}`);
  const tools: Record<string, string> = {};
  const profiles: Profiled[] = [];
  let cleanup = async () => {
    await proxy.stop();
    registry.child.kill();
    await root?.stop();
  };
  process.once('SIGINT', () => void cleanup().finally(() => process.exit(130)));

  try {
    if (root) {
      await root.start();
      const v = await root.exec('buildah --version; podman --version; oras version | sed -n 1p');
      [tools.buildah = '', tools.podman = '', tools.oras = ''] = v.stdout.trim().split('\n');
    }
    tools.zstd = (await sh('zstd --version')).stdout.trim();
    tools.curl = (await sh('curl --version | head -n1')).stdout.trim();
    const registryVersion = (await run(registryCmd[0] ?? 'docker-registry', [...registryCmd.slice(1), '--version'])).stdout.trim();
    tools.registry = `${registryVersion} (${registryCmd.length > 1 ? "the e2e root's" : "the host's"})`;
    tools.node = process.version;
    tools.ckpt = (await sh(`cd ${REPO} && echo "$(git rev-parse --short HEAD)$(git status --porcelain src | grep -q . && echo +dirty-src)"`)).stdout.trim();
    tools.ckptDistBuilt = distBuilt;

    const digestA = a.sha256 ?? '';

    // -- build + push --------------------------------------------------------------------------
    if (ONLY.has('push')) {
      log('== build + push');
      // The layers a zstd push sends, as blob files: curl uploads them to time the registry alone.
      const zstdLayout = join(WORK, 'zstd-layout');
      rmSync(zstdLayout, { recursive: true, force: true });
      await ckpt(['build', tarA, `oci:${zstdLayout}:bench`, '--no-cache']);
      const zstdLayers = layoutLayers(zstdLayout);
      for (let r = 1; r <= RUNS; r++) {
        for (const comp of ['zstd', 'gzip', 'none'] as const) {
          await sample(measure(`push-${comp}`, `ckpt push --compression ${comp}`, 'ckpt'), async () => {
            const x = await ckpt(['push', tarA, `${R}/ckpt-${comp}-r${r}:bench`, '--compression', comp, '--no-cache', '--json']);
            return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds, layerBytes: layerBytes(x.stdout) };
          }, [tarA]);
        }
        // At ckpt's level, and at zstd's own default (3), which the issue names.
        await sample(measure('zstd', `zstd -T2 -${ZSTD_LEVEL} of the tar (ckpt's level)`, 'bound'), async () => {
          const x = await sh(`zstd -q -T2 -${ZSTD_LEVEL} -c ${tarA} > /dev/null`);
          return { seconds: x.seconds, cpuSeconds: x.cpuSeconds };
        }, [tarA]);
        await sample(measure('zstd-default', 'zstd -T2 of the tar (its default level 3)', 'bound'), async () => {
          const x = await sh(`zstd -q -T2 -c ${tarA} > /dev/null`);
          return { seconds: x.seconds, cpuSeconds: x.cpuSeconds };
        }, [tarA]);
        // The digests an image needs (the tar's, for the diff_id, and the blob's), with the same
        // OpenSSL sha256 Node uses: part of the floor below.
        await sample(measure('sha256', 'openssl sha256 of the tar', 'bound'), async () => {
          const x = await sh(`openssl dgst -sha256 ${tarA} > /dev/null`);
          return { seconds: x.seconds, cpuSeconds: x.cpuSeconds };
        }, [tarA]);
        await sample(measure('curl', 'curl upload of the tar as one blob', 'bound'), async () => {
          const x = await sh(`${curlUpload(R, `curl-r${r}`)}
            up ${tarA} ${digestA}`);
          return { seconds: x.seconds, cpuSeconds: x.cpuSeconds };
        }, [tarA]);
        // All layers at once, as ckpt sends them: how long the registry takes to receive,
        // hash and store those bytes when nothing else has to be done.
        await sample(measure('curl-zstd', "curl upload of ckpt's zstd layers, all at once", 'bound'), async () => {
          const x = await sh(`${curlUpload(R, `curl-zstd-r${r}`)}
            ${zstdLayers.map((l) => `up ${l.file} ${l.digest} &`).join('\n')}
            for job in $(jobs -p); do wait "$job"; done`);
          return { seconds: x.seconds, cpuSeconds: x.cpuSeconds };
        }, zstdLayers.map((l) => l.file));
        await sample(measure('pipeline', `shell pipeline doing a push's work: openssl sha256, zstd -T2 -${ZSTD_LEVEL}, curl (one blob)`, 'bound'), async () => {
          const x = await sh(pipelinePush(R, `pipeline-r${r}`, tarA));
          return { seconds: x.seconds, cpuSeconds: x.cpuSeconds };
        }, [tarA]);
        if (root) {
          await sample(measure('recipe', 'buildah recipe (from, add, config, commit, push)', 'alternative'), async () => {
            const x = await root.exec(`
              mark t0
              c=$(buildah from scratch)
              buildah add --quiet "$c" ${rel(tarA)} / >/dev/null
              buildah config --annotation=io.kubernetes.cri-o.annotations.checkpoint.name=counter "$c"
              buildah commit --quiet "$c" localhost/bench-recipe:r${r} >/dev/null
              buildah push --quiet --tls-verify=false localhost/bench-recipe:r${r} docker://${R}/recipe-r${r}:bench
              mark t1
              buildah rm "$c" >/dev/null; buildah rmi -f localhost/bench-recipe:r${r} >/dev/null`);
            return { seconds: x.seconds };
          }, [tarA]);
          await sample(measure('oras-push', 'oras push of the directory', 'alternative'), async () => {
            const dir = rel(dirA);
            const x = await root.exec(`
              cd ${dir.slice(0, dir.lastIndexOf('/'))}
              mark t0
              oras push --plain-http ${R}/oras-r${r}:bench ${dir.slice(dir.lastIndexOf('/') + 1)} >/dev/null
              mark t1`);
            return { seconds: x.seconds };
          }, [dirA]);
        }
      }
    }

    // The image every pull reads: ckpt's zstd build (podman and ckpt pull the same bytes).
    const image = `${R}/ckpt-zstd-r1:bench`;
    if (ONLY.has('pull') || ONLY.has('inspect') || ONLY.has('profile')) {
      if (!measures.get('push-zstd')?.samples.length) await ckpt(['push', tarA, image, '--no-cache']);
    }

    // -- pull + unpack -------------------------------------------------------------------------
    if (ONLY.has('pull')) {
      log('== pull + unpack');
      const pullDir = join(WORK, 'pull');
      rmSync(pullDir, { recursive: true, force: true });
      mkdirSync(pullDir, { recursive: true });
      let orasImage = `${R}/oras-r1:bench`;
      if (root && !measures.get('oras-push')?.samples.length) {
        await root.exec(`cd ${rel(dataDir)} && oras push --plain-http ${orasImage} a >/dev/null`).catch(() => (orasImage = ''));
      }
      for (let r = 1; r <= RUNS; r++) {
        if (hasPull) {
          await sample(measure('pull-dir', 'ckpt pull to a directory', 'ckpt'), async () => {
            const out = join(pullDir, `dir-r${r}`);
            const x = await ckpt(['pull', image, out]);
            const got = dirBytes(out);
            rmSync(out, { recursive: true, force: true });
            if (got < a.memoryBytes) throw new Error(`ckpt pull wrote ${got} bytes, fewer than the ${a.memoryBytes} of memory`);
            return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds };
          }, registryBlobs(repositoryOf(image)));
          await sample(measure('pull-tar', 'ckpt pull to an archive (.tar)', 'ckpt'), async () => {
            const out = join(pullDir, `out-r${r}.tar`);
            const x = await ckpt(['pull', image, out]);
            const got = statSync(out).size;
            rmSync(out, { force: true });
            if (got < a.memoryBytes) throw new Error(`ckpt pull wrote a ${got}-byte archive, smaller than the ${a.memoryBytes} of memory`);
            return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds };
          }, registryBlobs(repositoryOf(image)));
        }
        if (root) {
          await sample(measure('podman-pull', 'podman pull (same image)', 'alternative'), async () => {
            const x = await root.exec(`
              podman rmi -f ${image} >/dev/null 2>&1 || true
              mark t0
              podman pull -q --tls-verify=false ${image} >/dev/null
              mark t1
              podman rmi -f ${image} >/dev/null`);
            return { seconds: x.seconds };
          }, registryBlobs(repositoryOf(image)));
          if (orasImage) {
            await sample(measure('oras-pull', 'oras pull (its own push of the directory)', 'alternative'), async () => {
              const x = await root.exec(`
                rm -rf pull/oras-r${r}
                mark t0
                oras pull --plain-http ${orasImage} -o pull/oras-r${r} >/dev/null
                mark t1
                rm -rf pull/oras-r${r}`);
              return { seconds: x.seconds };
            }, registryBlobs(repositoryOf(orasImage)));
          }
        }
      }
    }

    // -- profiles of the slow paths: one more push and pull each, under --cpu-prof ----------------
    if (ONLY.has('profile')) {
      log('== profiles');
      await warm([tarA]);
      profiles.push(await profiled(`push-zstd-${sizeLabel(SIZE)}`, ['push', tarA, `${R}/profile:bench`, '--no-cache']));
      if (hasPull) {
        const out = join(WORK, 'profile-pull-out');
        rmSync(out, { recursive: true, force: true });
        await warm(registryBlobs(repositoryOf(image)));
        profiles.push(await profiled(`pull-dir-${sizeLabel(SIZE)}`, ['pull', image, out]));
        rmSync(out, { recursive: true, force: true });
      }
    }

    // -- pushing again: unchanged, and 10% changed ------------------------------------------------
    if (ONLY.has('repush') && b) {
      log('== pushing again (build cache on)');
      const cacheDir = join(WORK, 'cache', 'main');
      rmSync(cacheDir, { recursive: true, force: true });
      await sample(measure('push-cached-first', 'ckpt push zstd, first time with the cache', 'ckpt'), async () => {
        const x = await ckpt(['push', tarA, `${R}/cached:bench`, '--json'], { CKPT_CACHE_DIR: cacheDir });
        return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds, layerBytes: layerBytes(x.stdout) };
      }, [tarA]);
      for (let r = 1; r <= RUNS; r++) {
        await sample(measure('repush', 'ckpt push of the unchanged checkpoint again', 'ckpt'), async () => {
          proxy.reset();
          const x = await ckpt(['push', tarA, `${P}/cached:bench`, '--json'], { CKPT_CACHE_DIR: cacheDir });
          const c = proxy.reset();
          return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds, upBytes: c.up, blobUpBytes: c.blobUp, downBytes: c.down };
        }, [tarA]);
      }
      for (let r = 1; r <= RUNS; r++) {
        const cache = join(WORK, 'cache', `inc-r${r}`);
        rmSync(cache, { recursive: true, force: true });
        await ckpt(['push', tarA, `${R}/inc-r${r}:a`], { CKPT_CACHE_DIR: cache });
        await sample(measure('push-changed', 'ckpt push of the 10%-changed checkpoint (after the first)', 'ckpt'), async () => {
          proxy.reset();
          const x = await ckpt(['push', b.tar ?? '', `${P}/inc-r${r}:b`, '--json'], { CKPT_CACHE_DIR: cache });
          const c = proxy.reset();
          return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds, upBytes: c.up, blobUpBytes: c.blobUp, downBytes: c.down, layerBytes: layerBytes(x.stdout) };
        }, [b.tar ?? '']);
        rmSync(cache, { recursive: true, force: true });
      }
    }

    // -- inspect ---------------------------------------------------------------------------------
    if (ONLY.has('inspect')) {
      log('== inspect');
      for (let r = 1; r <= RUNS; r++) {
        await sample(measure('inspect', 'ckpt inspect of the registry image', 'ckpt'), async () => {
          proxy.reset();
          const x = await ckpt(['inspect', `${P}/ckpt-zstd-r1:bench`, '--json']);
          const c = proxy.reset();
          const j = JSON.parse(x.stdout) as { fetchedBytes?: number };
          return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds, fetchedBytes: j.fetchedBytes, downBytes: c.down, upBytes: c.up };
        });
      }
    }

    // -- peak RSS at larger sizes ------------------------------------------------------------------
    if (ONLY.has('rss')) {
      for (const s of RSS_SIZES) {
        const size = parseSize(s);
        const label = sizeLabel(size);
        log(`== peak RSS at ${label}`);
        const dir = join(WORK, `data-${label}-seed${SEED}-files${PAGES_FILES}`);
        const big = ensureCheckpoint(dir, 'a', { ...gen, size, variant: 'a' }, { dir: false, tar: true });
        log(`checkpoint: ${human(big.tarBytes)}${big.seconds ? `, made in ${big.seconds.toFixed(1)} s` : ' (found)'}`);
        await sh('sync');
        const ref = `${R}/rss-${label.toLowerCase()}:bench`;
        await sample(measure(`push-zstd-${label}`, `ckpt push --compression zstd, ${label}`, 'ckpt', size), async () => {
          const x = await ckpt(['push', big.tar ?? '', ref, '--no-cache', '--json']);
          return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds, layerBytes: layerBytes(x.stdout) };
        }, [big.tar ?? '']);
        await sample(measure(`zstd-${label}`, `zstd -T2 -${ZSTD_LEVEL} of the tar, ${label}`, 'bound', size), async () => {
          const x = await sh(`zstd -q -T2 -${ZSTD_LEVEL} -c ${big.tar} > /dev/null`);
          return { seconds: x.seconds, cpuSeconds: x.cpuSeconds };
        }, [big.tar ?? '']);
        if (hasPull) {
          await sample(measure(`pull-dir-${label}`, `ckpt pull to a directory, ${label}`, 'ckpt', size), async () => {
            const out = join(WORK, 'pull', `rss-dir`);
            rmSync(out, { recursive: true, force: true });
            const x = await ckpt(['pull', ref, out]);
            rmSync(out, { recursive: true, force: true });
            return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds };
          }, registryBlobs(repositoryOf(ref)));
          await sample(measure(`pull-tar-${label}`, `ckpt pull to an archive, ${label}`, 'ckpt', size), async () => {
            const out = join(WORK, 'pull', `rss.tar`);
            rmSync(out, { force: true });
            const x = await ckpt(['pull', ref, out]);
            rmSync(out, { force: true });
            return { seconds: x.seconds, rssKb: x.rssKb, cpuSeconds: x.cpuSeconds };
          }, registryBlobs(repositoryOf(ref)));
        }
      }
    }
  } finally {
    await cleanup();
    cleanup = async () => undefined;
    if (!KEEP) {
      rmSync(join(WORK, 'registry'), { recursive: true, force: true });
      rmSync(join(WORK, 'pull'), { recursive: true, force: true });
      rmSync(join(WORK, 'cache'), { recursive: true, force: true });
      rmSync(join(WORK, 'zstd-layout'), { recursive: true, force: true });
    }
  }

  const report = buildReport({ startedAt, load0, tools, a, b, hasPull, rootShared: root?.shared ?? false, root: Boolean(root), profiles });
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-');
  writeFileSync(join(RESULTS, 'latest.json'), `${JSON.stringify(report.json, null, 2)}\n`);
  mkdirSync(join(WORK, 'history'), { recursive: true });
  copyFileSync(join(RESULTS, 'latest.json'), join(WORK, 'history', `${stamp}.json`));
  writeFileSync(join(RESULTS, 'latest.md'), report.markdown);
  process.stdout.write(`${report.markdown}\n`);
  log(`wrote ${join(RESULTS, 'latest.json')} and latest.md`);
}

// ---- the report ---------------------------------------------------------------------------------

interface Row {
  line: string;
  ckpt?: number;
  ckptText: string;
  versus: string;
  other?: number;
  otherText: string;
  ratio?: number;
  ratioText: string;
  target: string;
  result: 'met' | 'missed' | 'n/a' | 'not measured';
}

const fmt = (x: number | undefined, unit = 's') => (x === undefined ? '—' : `${x.toFixed(x < 10 ? 2 : 1)} ${unit}`);

function buildReport(ctx: {
  startedAt: Date;
  load0: number[];
  tools: Record<string, string>;
  a: GenerateResult;
  b?: GenerateResult;
  hasPull: boolean;
  rootShared: boolean;
  root: boolean;
  profiles: Profiled[];
}): { json: unknown; markdown: string } {
  const rows: Row[] = [];
  const L = sizeLabel(SIZE);
  /** `faster`: the target is other/ckpt ≥ bound; `within`: ckpt/other ≤ bound; none: informative. */
  const versus = (line: string, ckptId: string, otherId: string, otherLabel: string, kind?: 'faster' | 'within', bound?: number) => {
    const c = med(ckptId);
    const o = med(otherId);
    let ratio: number | undefined;
    let ratioText = '—';
    let target = '—';
    let result: Row['result'] = 'n/a';
    if (c !== undefined && o !== undefined) {
      ratio = kind === 'within' ? c / o : o / c;
      ratioText = kind === 'within' ? `${ratio.toFixed(2)}× its time` : ratio >= 1 ? `${ratio.toFixed(1)}× faster` : `${(1 / ratio).toFixed(1)}× slower`;
    }
    if (kind && bound !== undefined) {
      target = kind === 'faster' ? `≥ ${bound}× faster` : `≤ ${bound}× its time`;
      result = ratio === undefined ? 'not measured' : (kind === 'faster' ? ratio >= bound : ratio <= bound) ? 'met' : 'missed';
    }
    rows.push({ line, ckpt: c, ckptText: fmt(c), versus: otherLabel, other: o, otherText: fmt(o), ratio, ratioText, target, result });
  };
  const check = (line: string, value: number | undefined, text: string, target: string, ok: (v: number) => boolean, versusText = '—') => {
    rows.push({ line, ckpt: value, ckptText: text, versus: versusText, otherText: '—', ratioText: '—', target, result: value === undefined ? 'not measured' : ok(value) ? 'met' : 'missed' });
  };

  versus(`push zstd, ${L}`, 'push-zstd', 'recipe', 'buildah recipe (gzip)', 'faster', 8);
  versus(`push zstd, ${L}`, 'push-zstd', 'zstd', `zstd -T2 -${ZSTD_LEVEL} alone (same level)`, 'within', 1.5);
  versus(`push zstd, ${L}`, 'push-zstd', 'zstd-default', 'zstd -T2 alone (level 3)');
  versus(`push zstd, ${L}`, 'push-zstd', 'oras-push', 'oras push (gzip)');
  versus(`push zstd, ${L}`, 'push-zstd', 'pipeline', `shell pipeline: the same work by native tools, one blob (openssl sha256, zstd -T2 -${ZSTD_LEVEL}, curl)`);
  versus(`push zstd, ${L}`, 'push-zstd', 'curl-zstd', "registry alone taking ckpt's zstd layers (curl)");
  // With the registry on the same cores, a push cannot beat the CPU that compressing, hashing the
  // tar and the blob, and the registry's ingest need, shared over the cores, nor any one of them
  // alone: the floor any tool has on this machine.
  const zstdCpu = med('zstd', 'cpuSeconds');
  const tarShaCpu = med('sha256', 'cpuSeconds');
  const ingestCpu = med('curl-zstd', 'registryCpuSeconds');
  const zstdTime = med('zstd');
  const ingestTime = med('curl-zstd');
  const pz = med('push-zstd');
  const blobShare = (med('push-zstd', 'layerBytes') ?? 0) / ctx.a.tarBytes;
  if (zstdCpu !== undefined && tarShaCpu !== undefined && ingestCpu !== undefined && zstdTime !== undefined && ingestTime !== undefined) {
    const shaCpu = tarShaCpu * (1 + blobShare);
    const floor = Math.max(zstdTime, ingestTime, (zstdCpu + shaCpu + ingestCpu) / availableParallelism());
    rows.push({
      line: `push zstd, ${L}`,
      ckpt: pz,
      ckptText: fmt(pz),
      versus: `floor on this machine: (zstd ${zstdCpu.toFixed(2)} + sha256 ${shaCpu.toFixed(2)} + registry ${ingestCpu.toFixed(2)} CPU s) / ${availableParallelism()} cores`,
      other: floor,
      otherText: fmt(floor),
      ratioText: pz === undefined ? '—' : `${(pz / floor).toFixed(2)}× the floor (1.5× zstd alone is ${fmt(1.5 * zstdTime)})`,
      target: '—',
      result: 'n/a',
    });
  }
  versus(`push gzip, ${L}`, 'push-gzip', 'recipe', 'buildah recipe (gzip)');
  versus(`push none, ${L}`, 'push-none', 'curl', 'curl, one blob', 'within', 2);
  versus(`pull to dir, ${L}`, 'pull-dir', 'podman-pull', 'podman pull', 'faster', 3);
  versus(`pull to dir, ${L}`, 'pull-dir', 'oras-pull', 'oras pull');
  versus(`pull to .tar, ${L}`, 'pull-tar', 'podman-pull', 'podman pull');
  const re = med('repush');
  check('push unchanged again', re, fmt(re), '< 1 s', (v) => v < 1);
  const reBlob = max('repush', 'blobUpBytes');
  check('push unchanged again: blob bytes sent', reBlob, reBlob === undefined ? '—' : `${reBlob} B (all bytes up: ${max('repush', 'upBytes')} B)`, 'no layer bytes', (v) => v === 0);
  const ch = med('push-changed');
  const changedUp = med('push-changed', 'blobUpBytes');
  const fullUp = med('push-zstd', 'layerBytes');
  const changedShare = changedUp !== undefined && fullUp ? changedUp / fullUp : undefined;
  rows.push({
    line: 'push 10%-changed checkpoint',
    ckpt: ch,
    ckptText: `${fmt(ch)}, ${human(med('push-changed', 'blobUpBytes') ?? 0)} of blobs sent`,
    versus: `full push; ${ctx.b ? human(ctx.b.changedBytes) : '?'} of memory changed`,
    other: med('push-zstd'),
    otherText: `${fmt(med('push-zstd'))}, ${human(med('push-zstd', 'layerBytes') ?? 0)}`,
    ratioText: changedShare === undefined ? '—' : `${(changedShare * 100).toFixed(0)}% of a full push's bytes`,
    target: '— (measured)',
    result: 'n/a',
  });
  const fetched = max('inspect', 'fetchedBytes');
  check('inspect from the registry: fetched', fetched, fetched === undefined ? '—' : `${human(fetched)} (${fmt(med('inspect'))}; ${human(max('inspect', 'downBytes') ?? 0)} on the wire)`, '< 1 MB', (v) => v < MB);
  const rss = (ids: string[]) => {
    const xs = ids.map((id) => max(id, 'rssKb')).filter((x): x is number => x !== undefined);
    return xs.length ? Math.max(...xs) * 1024 : undefined;
  };
  const rssRow = (line: string, ids: string[]) => {
    const v = rss(ids);
    check(line, v, v === undefined ? '—' : `${(v / MiB).toFixed(0)} MiB`, '< 256 MiB', (x) => x < 256 * MiB);
  };
  rssRow(`peak RSS, push (zstd/gzip/none), ${L}`, ['push-zstd', 'push-gzip', 'push-none']);
  rssRow(`peak RSS, pull (dir/.tar), ${L}`, ['pull-dir', 'pull-tar']);
  for (const s of RSS_SIZES) {
    const l = sizeLabel(parseSize(s));
    rssRow(`peak RSS, push zstd, ${l}`, [`push-zstd-${l}`]);
    rssRow(`peak RSS, pull (dir/.tar), ${l}`, [`pull-dir-${l}`, `pull-tar-${l}`]);
  }

  const all = [...measures.values()].map((m) => ({
    ...m,
    median: med(m.id),
    medianRssMiB: med(m.id, 'rssKb') !== undefined ? (med(m.id, 'rssKb') ?? 0) / 1024 : undefined,
  }));
  const met = rows.filter((r) => r.result === 'met').length;
  const targets = rows.filter((r) => r.result !== 'n/a').length;
  const env2 = {
    date: ctx.startedAt.toISOString(),
    cpus: availableParallelism(),
    loadavgStart: ctx.load0.map((x) => +x.toFixed(2)),
    loadavgEnd: loadavg().map((x) => +x.toFixed(2)),
    runs: RUNS,
    size: SIZE,
    seed: SEED,
    pagesFiles: PAGES_FILES,
    tarBytes: ctx.a.tarBytes,
    changedBytes: ctx.b?.changedBytes,
    zstdLayerBytes: med('push-zstd', 'layerBytes'),
    tools: ctx.tools,
    ckptPull: ctx.hasPull,
    e2eRoot: ctx.root ? (ctx.rootShared ? 'shared (its lock was held by someone else)' : 'held for the run') : 'missing',
  };
  const md: string[] = [];
  md.push(`## ckpt benchmark: ${human(SIZE)} checkpoint, ${RUNS} runs each (median)`);
  md.push('');
  md.push(
    `${env2.date.slice(0, 16).replace('T', ' ')} UTC · ${env2.cpus} CPUs · load ${env2.loadavgStart.join('/')} → ${env2.loadavgEnd.join('/')} · ckpt ${ctx.tools.ckpt} · node ${process.version} · ` +
      `tar ${human(ctx.a.tarBytes)} (${PAGES_FILES} pages files), zstd layers ${human(env2.zstdLayerBytes ?? 0)} · targets met: ${met}/${targets}`,
  );
  md.push('');
  md.push('| line | ckpt | versus | their time | ratio | target | result |');
  md.push('|---|---|---|---|---|---|---|');
  for (const r of rows) md.push(`| ${r.line} | ${r.ckptText} | ${r.versus} | ${r.otherText} | ${r.ratioText} | ${r.target} | ${r.result === 'met' ? '**met**' : r.result === 'missed' ? '**MISSED**' : r.result} |`);
  md.push('');
  md.push('<details><summary>every measure</summary>');
  md.push('');
  md.push('| measure | size | median | runs (s) | CPU s (median) | registry CPU s (median) | load at end of runs | peak RSS (MiB) | note |');
  md.push('|---|---|---|---|---|---|---|---|---|');
  for (const m of all) {
    const rs = m.samples.map((s) => s.rssKb).filter((x): x is number => x !== undefined);
    md.push(
      `| ${m.label} | ${sizeLabel(m.size)} | ${fmt(m.median)} | ${m.samples.map((s) => s.seconds.toFixed(2)).join(', ')} | ${fmt(med(m.id, 'cpuSeconds'), '')} | ${fmt(med(m.id, 'registryCpuSeconds'), '')} | ${m.samples.map((s) => s.load1 ?? '?').join(', ')} | ${rs.length ? (Math.max(...rs) / 1024).toFixed(0) : '—'} | ${m.error ? `FAILED: ${m.error.replace(/\|/g, '/')}` : ''} |`,
    );
  }
  md.push('');
  md.push(`Tools: ${Object.entries(ctx.tools).map(([k, v]) => `${k}: ${v}`).join('; ')}. e2e root: ${env2.e2eRoot}.`);
  md.push('</details>');
  md.push('');
  if (ctx.profiles.length) {
    md.push('<details><summary>where the time goes: one more run of each slow path under --cpu-prof</summary>');
    md.push('');
    md.push('Self time by function; `idle` is a thread waiting (on I/O, on other threads, on the registry). Summarise a profile with `node node_modules/.cache/ckpt-bench/profile.js FILE`.');
    md.push('');
    md.push('| run | thread | profile | busy / wall | top functions (self ms) |');
    md.push('|---|---|---|---|---|');
    for (const p of ctx.profiles) {
      p.threads.forEach((t, i) => {
        const top = t.byFunction.map((f) => `${f.name.replace(/\|/g, '/')} ${f.ms}`).join('; ');
        md.push(`| ${p.name} (${p.seconds.toFixed(2)} s) | ${i === 0 ? 'main' : `worker ${i}`} | \`${t.file}\` | ${t.wallMs - t.idleMs} / ${t.wallMs} ms | ${top} |`);
      });
    }
    md.push('</details>');
    md.push('');
  }
  return { json: { environment: env2, rows, measures: all, profiles: ctx.profiles }, markdown: md.join('\n') };
}

main().catch((err: unknown) => {
  log(`failed: ${(err as Error).stack ?? String(err)}`);
  process.exit(1);
});
