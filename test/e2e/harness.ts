// End-to-end harness: a Debian 13 root with CRIU and Podman (root.sh), a session in it
// (enter.sh), a registry on a loopback port, the ckpt CLI on the host, and the counter container
// whose restore the tests check. See ../shared/docs/REAL-RUNTIMES.md for why it looks like this.
//
// Layout of a run: the host directory `session.work` is bind-mounted at `/e2e` inside the root, so
// what Podman and CRIU write there is readable by ckpt on the host and the other way round.
// Containers and CRIU-restored processes live in one mount namespace for the whole session.

import { execa } from 'execa';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const E2E_DIR = dirname(fileURLToPath(import.meta.url));
export const PROJECT_DIR = resolve(E2E_DIR, '../..');
export const CLI = join(PROJECT_DIR, 'dist/cli/ckpt.js');
export const BASE_IMAGE = 'localhost/bbox:motd';
/** Where the session's work directory appears inside the root. */
export const INSIDE_WORK = '/e2e';

export interface RunResult {
  stdout: string;
  stderr: string;
  exitCode: number;
  command: string;
}

export class E2EError extends Error {
  override name = 'E2EError';
}

function oneLine(s: string, max = 2000): string {
  const t = s.trim();
  return t.length > max ? `${t.slice(0, max)}...` : t;
}

function describe(r: RunResult): string {
  return `\`${r.command}\` exited ${r.exitCode}${r.stderr.trim() ? `: ${oneLine(r.stderr)}` : ''}` +
    (r.stdout.trim() ? `\n  stdout: ${oneLine(r.stdout, 800)}` : '');
}

/** Throw an E2EError with the command, exit code and stderr unless it succeeded. */
export function check(r: RunResult, what?: string): RunResult {
  if (r.exitCode !== 0) throw new E2EError(`${what ? `${what}: ` : ''}${describe(r)}`);
  return r;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Single-quote a string for a POSIX shell. */
export function sh(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

// --- the root ------------------------------------------------------------------------------------

let rootPath: string | undefined;

/**
 * The Debian 13 root, built by root.sh on first use and cached in /var/cache/ckpt-e2e (or
 * $CKPT_E2E_CACHE). Takes a minute or two when the package list changed, milliseconds otherwise.
 */
export async function ensureRoot(): Promise<string> {
  if (rootPath) return rootPath;
  if (process.getuid?.() !== 0) {
    throw new E2EError('the end-to-end suite must run as root: it builds a Debian root, mounts and runs CRIU');
  }
  const r = await execa(join(E2E_DIR, 'root.sh'), [], { reject: false, timeout: 30 * 60_000, all: true });
  if (r.exitCode !== 0) {
    throw new E2EError(`test/e2e/root.sh could not build the Debian 13 root (exit ${r.exitCode}):\n${r.all ?? ''}`);
  }
  const lines = String(r.stdout).trim().split('\n');
  rootPath = lines[lines.length - 1];
  if (!rootPath || !existsSync(join(rootPath, 'usr/bin/podman'))) {
    throw new E2EError(`test/e2e/root.sh printed no usable root: ${r.stdout}`);
  }
  return rootPath;
}

// --- a session in the root -----------------------------------------------------------------------

export interface InRootOptions {
  /** Milliseconds; default 5 minutes. */
  timeout?: number;
  /** Throw (with the command's stderr) on a non-zero exit; default true. */
  check?: boolean;
  /** Text for stdin. */
  input?: string;
}

export class Session {
  private constructor(
    /** The root on the host. */
    readonly root: string,
    /** The work directory on the host; `/e2e` inside. */
    readonly work: string,
    /** The session's state file (enter.sh --session). */
    readonly statefile: string,
  ) {}

  /**
   * Start a session: one mount namespace inside the root, held open until stop(). Only one
   * session may use the root at a time (enter.sh takes a lock). Clears what an earlier run left
   * (containers, images other than the base image, registry drop-ins) and fails, saying why, if
   * CRIU cannot work here.
   */
  static async start(): Promise<Session> {
    const root = await ensureRoot();
    const work = await mkdtemp('/var/tmp/ckpt-e2e-');
    await mkdir(join(work, '.state'), { recursive: true });
    const statefile = join(work, '.state', 'holder');
    const r = await execa(join(E2E_DIR, 'enter.sh'), ['--root', root, '--bind', `${work}:${INSIDE_WORK}`, '--start', statefile], {
      reject: false,
      timeout: 60_000,
    });
    if (r.exitCode !== 0) {
      await rm(work, { recursive: true, force: true });
      throw new E2EError(`could not enter the Debian 13 root ${root}: ${r.stderr || r.stdout}`);
    }
    const s = new Session(root, work, statefile);
    try {
      await s.reset();
      await s.criuCheck();
    } catch (e) {
      await s.stop();
      throw e;
    }
    return s;
  }

  /** Run a bash command line inside the root (in the session's mount namespace). */
  async run(cmd: string, opts: InRootOptions = {}): Promise<RunResult> {
    const r = await execa(join(E2E_DIR, 'enter.sh'), ['--session', this.statefile, '--', '/bin/bash', '-c', cmd], {
      reject: false,
      timeout: opts.timeout ?? 5 * 60_000,
      input: opts.input ?? '',
      stripFinalNewline: false,
    });
    const res: RunResult = {
      stdout: String(r.stdout ?? ''),
      stderr: String(r.stderr ?? '') + (r.timedOut ? `\n(timed out after ${opts.timeout ?? 300000} ms)` : ''),
      exitCode: r.exitCode ?? -1,
      command: cmd.length > 300 ? `${cmd.slice(0, 300)}...` : cmd,
    };
    if (opts.check !== false) check(res, 'in the e2e root');
    return res;
  }

  /** The host path of a path under /e2e inside the root (and any other path inside the root). */
  hostPath(inside: string): string {
    if (inside === INSIDE_WORK || inside.startsWith(`${INSIDE_WORK}/`)) {
      return join(this.work, relative(INSIDE_WORK, inside));
    }
    return join(this.root, inside);
  }

  /** The path inside the root of a host path in the work directory. */
  insidePath(host: string): string {
    const rel = relative(this.work, host);
    if (rel.startsWith('..')) throw new E2EError(`${host} is not under the session's work directory ${this.work}`);
    return join(INSIDE_WORK, rel);
  }

  /** Remove containers, non-base images and registry drop-ins left by an earlier run. */
  async reset(): Promise<void> {
    const dropins = join(this.root, 'etc/containers/registries.conf.d');
    for (const f of await readdir(dropins).catch(() => [] as string[])) {
      if (f.startsWith('ckpt-e2e-')) await rm(join(dropins, f), { force: true });
    }
    await this.run(
      `podman rm --all --force --time 0 >/dev/null
       podman images --format '{{.Id}} {{.Repository}}:{{.Tag}}' | while read -r id name; do
         [ "$name" = ${sh(BASE_IMAGE)} ] || podman rmi --force "$id" >/dev/null 2>&1 || true
       done
       podman image exists ${sh(BASE_IMAGE)}`,
      { timeout: 120_000 },
    ).catch((e: unknown) => {
      throw new E2EError(`resetting Podman in the e2e root failed (is ${BASE_IMAGE} there?): ${(e as Error).message}`);
    });
  }

  /** `criu check`: the suite fails here, with CRIU's words, when this machine cannot checkpoint. */
  async criuCheck(): Promise<void> {
    const r = await this.run('criu check 2>&1', { check: false, timeout: 60_000 });
    if (r.exitCode !== 0) {
      throw new E2EError(`this machine cannot run CRIU, so the end-to-end suite cannot pass: \`criu check\` says: ${oneLine(r.stdout)}`);
    }
    // `criu check` passes on machines where every dump hangs (see root.sh on hardware
    // breakpoints), so dump one `sleep` for real, with a deadline.
    const d = await this.run(
      `d=$(mktemp -d /tmp/criu-smoke.XXXXXX); cd /
       setsid sleep 600 </dev/null >/dev/null 2>&1 & pid=$!
       if timeout 60 criu dump -t $pid -D "$d" -o dump.log; then echo dumped; else rc=$?; kill -9 $pid 2>/dev/null; tail -n 5 "$d/dump.log"; echo "exit $rc"; fi
       rm -rf "$d"`,
      { check: false, timeout: 90_000 },
    );
    if (!d.stdout.includes('dumped')) {
      throw new E2EError(`this machine cannot run CRIU, so the end-to-end suite cannot pass: \`criu dump\` of a plain \`sleep\` failed or hung (exit 124 = hung 60 s): ${oneLine(d.stdout + d.stderr)}`);
    }
  }

  /** Remove every container, leave the session's namespace and delete the work directory. */
  async stop(opts: { keepWork?: boolean } = {}): Promise<void> {
    await this.run('podman rm --all --force --time 0 >/dev/null 2>&1 || true', { check: false, timeout: 120_000 }).catch(() => undefined);
    await execa(join(E2E_DIR, 'enter.sh'), ['--stop', this.statefile], { reject: false, timeout: 60_000 });
    if (!opts.keepWork && !process.env.CKPT_E2E_KEEP) {
      await rm(this.work, { recursive: true, force: true, maxRetries: 3 }).catch(() => undefined);
    }
  }
}

// --- a registry --------------------------------------------------------------------------------

export interface Registry {
  /** `127.0.0.1:PORT` */
  host: string;
  port: number;
  url: string;
  dir: string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', rej);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => (a && typeof a === 'object' ? res(a.port) : rej(new Error('no port'))));
    });
  });
}

/**
 * Start Debian's docker-registry (distribution 2.8) on a free loopback port with filesystem
 * storage and deletes enabled, and tell Podman in the root that it speaks plain HTTP.
 * Uses the host's /usr/bin/docker-registry, else the root's.
 */
export async function startRegistry(session?: Session): Promise<Registry> {
  const root = session?.root ?? (await ensureRoot());
  const onHost = process.env.CKPT_E2E_REGISTRY !== 'root' && existsSync('/usr/bin/docker-registry');
  const inRoot = onHost ? undefined : session;
  if (!onHost && !inRoot) throw new E2EError('no /usr/bin/docker-registry on the host: start the registry with a session (it then runs in the root)');
  const bin = onHost ? '/usr/bin/docker-registry' : 'the root\'s docker-registry';
  let lastErr = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    // Inside the session's work directory when the registry runs in the root (same network
    // namespace, so 127.0.0.1:PORT is the same address on both sides).
    const dir = inRoot ? await mkdtemp(join(inRoot.work, 'registry-')) : await mkdtemp('/var/tmp/ckpt-e2e-registry-');
    const dirSeen = inRoot ? inRoot.insidePath(dir) : dir;
    const config = `version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: ${dirSeen}/data
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:${port}
  secret: ckpt-e2e
`;
    await writeFile(join(dir, 'config.yml'), config);
    const child = inRoot
      ? execa(join(E2E_DIR, 'enter.sh'), ['--session', inRoot.statefile, '--', 'docker-registry', 'serve', join(dirSeen, 'config.yml')], {
          reject: false, stdio: ['ignore', 'ignore', 'pipe'], buffer: false,
        })
      : execa(bin, ['serve', join(dir, 'config.yml')], { reject: false, stdio: ['ignore', 'ignore', 'pipe'], buffer: false });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => { stderr += d.toString(); });
    let exited = false;
    void child.then(() => { exited = true; });
    const url = `http://127.0.0.1:${port}`;
    const deadline = Date.now() + 15_000;
    let up = false;
    while (!exited && Date.now() < deadline) {
      try {
        const r = await fetch(`${url}/v2/`);
        if (r.status === 200) { up = true; break; }
      } catch { /* not yet */ }
      await sleep(100);
    }
    if (!up) {
      child.kill('SIGKILL');
      await child.catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
      lastErr = stderr;
      continue;
    }
    const host = `127.0.0.1:${port}`;
    const dropin = join(root, `etc/containers/registries.conf.d/ckpt-e2e-${port}.conf`);
    await writeFile(dropin, `[[registry]]\nlocation = "${host}"\ninsecure = true\n`);
    return {
      host, port, url, dir,
      async stop() {
        child.kill('SIGTERM');
        await Promise.race([child.catch(() => undefined), sleep(5000)]);
        child.kill('SIGKILL');
        await rm(dropin, { force: true });
        await rm(dir, { recursive: true, force: true });
      },
    };
  }
  throw new E2EError(`docker-registry (${bin}) did not start on a loopback port: ${oneLine(lastErr)}`);
}

/** A manifest (and its content type) straight from the registry API. */
export async function getManifest(reg: Registry, repo: string, ref: string): Promise<{ body: Record<string, unknown>; mediaType: string; raw: string }> {
  const r = await fetch(`${reg.url}/v2/${repo}/manifests/${ref}`, {
    headers: {
      accept: [
        'application/vnd.oci.image.manifest.v1+json',
        'application/vnd.oci.image.index.v1+json',
        'application/vnd.docker.distribution.manifest.v2+json',
        'application/vnd.docker.distribution.manifest.list.v2+json',
      ].join(', '),
    },
  });
  const raw = await r.text();
  if (r.status !== 200) throw new E2EError(`GET ${reg.host}/${repo}:${ref} manifest: HTTP ${r.status}: ${oneLine(raw)}`);
  return { body: JSON.parse(raw) as Record<string, unknown>, mediaType: r.headers.get('content-type') ?? '', raw };
}

export async function putManifest(reg: Registry, repo: string, ref: string, body: unknown, mediaType: string): Promise<void> {
  const r = await fetch(`${reg.url}/v2/${repo}/manifests/${ref}`, {
    method: 'PUT',
    headers: { 'content-type': mediaType },
    body: JSON.stringify(body),
  });
  if (r.status !== 201) throw new E2EError(`PUT ${reg.host}/${repo}:${ref} manifest: HTTP ${r.status}: ${oneLine(await r.text())}`);
}

/**
 * Make a deliberately broken copy of a checkpoint image: the manifest of REPO:TAG without the
 * given annotations, pushed as REPO:NEWTAG. Returns the new reference.
 */
export async function copyWithoutAnnotations(reg: Registry, repo: string, tag: string, newTag: string, drop: string[]): Promise<string> {
  const m = await getManifest(reg, repo, tag);
  const had = (m.body.annotations as Record<string, string> | undefined) ?? {};
  for (const k of drop) {
    if (!(k in had)) throw new E2EError(`${reg.host}/${repo}:${tag} has no annotation ${k} to remove (has: ${Object.keys(had).join(', ')})`);
  }
  const ann = Object.fromEntries(Object.entries(had).filter(([k]) => !drop.includes(k)));
  await putManifest(reg, repo, newTag, { ...m.body, annotations: ann }, m.mediaType.split(';')[0] ?? m.mediaType);
  return `${reg.host}/${repo}:${newTag}`;
}

// --- ckpt on the host ------------------------------------------------------------------------------

/** Run the ckpt CLI (`node dist/cli/ckpt.js ARGS`) on the host. Does not throw; see check(). */
export async function ckpt(args: string[], opts: { timeout?: number; input?: string } = {}): Promise<RunResult> {
  const command = `ckpt ${args.join(' ')}`;
  if (!existsSync(CLI)) {
    return { stdout: '', stderr: `ckpt is not built: ${CLI} is missing (run \`npm run build\`)`, exitCode: 127, command };
  }
  const r = await execa(process.execPath, [CLI, ...args], {
    reject: false,
    timeout: opts.timeout ?? 5 * 60_000,
    input: opts.input ?? '',
    cwd: PROJECT_DIR,
  });
  return { stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? ''), exitCode: r.exitCode ?? -1, command };
}

// --- the counter container -----------------------------------------------------------------------

export interface CounterOptions {
  /** Hold this many MB of random text in the shell's memory and report its md5 on demand. */
  memoryMB?: number;
}

/** The counter's script: file-system changes, a deleted file, a counter every 0.2 s. */
export function counterScript(opts: CounterOptions = {}): string {
  const mem = opts.memoryMB
    ? // base64 of N*3/4 MB random bytes is N MB of text, held in a shell variable (anonymous
      // memory, so it lands in CRIU's pages images); md5 written before the checkpoint, and
      // again whenever /data/verify appears.
      `x=$(head -c ${Math.round((opts.memoryMB * 1024 * 1024 * 3) / 4)} /dev/urandom | base64)
       echo "$x" | md5sum > /data/sum.before
       echo ready > /data/memory-ready
       `
    : '';
  const verify = opts.memoryMB
    ? `if [ -e /data/verify ]; then echo "$x" | md5sum > /data/sum.tmp; mv /data/sum.tmp /data/sum.after; rm /data/verify; fi;`
    : '';
  return `mkdir -p /data
echo "written by the checkpointed container" > /data/state.txt
rm /etc/motd
${mem}i=0
while :; do i=$((i+1)); echo $i > /data/count.new; mv /data/count.new /data/count; ${verify} sleep 0.2; done`;
}

export interface CounterRun {
  name: string;
}

/** `podman run -d --name NAME localhost/bbox:motd /bin/busybox sh -c COUNTER`, and wait until it counts. */
export async function runCounter(s: Session, name: string, opts: CounterOptions = {}): Promise<void> {
  await s.run(`podman run -d --name ${sh(name)} --env GREETING=hello ${BASE_IMAGE} /bin/busybox sh -c ${sh(counterScript(opts))} >/dev/null`);
  const deadline = Date.now() + (opts.memoryMB ? 120_000 : 30_000);
  for (;;) {
    const ready = opts.memoryMB ? (await execIn(s, name, 'cat /data/memory-ready 2>/dev/null')).stdout.trim() === 'ready' : true;
    const n = await readCounter(s, name).catch(() => 0);
    if (ready && n >= 3) return;
    if (Date.now() > deadline) throw new E2EError(`the counter container ${name} did not start counting: ${(await s.run(`podman logs ${sh(name)} 2>&1 | tail -n 20`, { check: false })).stdout}`);
    await sleep(300);
  }
}

export async function execIn(s: Session, name: string, cmd: string): Promise<RunResult> {
  return s.run(`podman exec ${sh(name)} /bin/busybox sh -c ${sh(cmd)}`, { check: false, timeout: 60_000 });
}

/** The counter of a running container (`podman exec NAME cat /data/count`). */
export async function readCounter(s: Session, name: string): Promise<number> {
  const r = check(await execIn(s, name, 'cat /data/count'), `reading the counter of ${name}`);
  const n = Number.parseInt(r.stdout.trim(), 10);
  if (!Number.isFinite(n)) throw new E2EError(`the counter of ${name} is not a number: ${JSON.stringify(r.stdout)}`);
  return n;
}

/** The counter in the file system of a stopped (checkpointed) container, i.e. at checkpoint time. */
export async function stoppedCounter(s: Session, name: string): Promise<number> {
  const r = await s.run(`podman cp ${sh(name)}:/data/count - | tar -xOf -`);
  const n = Number.parseInt(r.stdout.trim(), 10);
  if (!Number.isFinite(n)) throw new E2EError(`the counter of the checkpointed ${name} is not a number: ${JSON.stringify(r.stdout)}`);
  return n;
}

export type Compress = 'none' | 'gzip' | 'zstd';

/**
 * `podman container checkpoint --export FILE --compress C NAME`. FILE is a path inside the root
 * (under /e2e so the host sees it). Returns the counter at checkpoint time.
 */
export async function checkpointExport(s: Session, name: string, file: string, compress: Compress): Promise<number> {
  await s.run(`podman container checkpoint --export ${sh(file)} --compress ${compress} ${sh(name)} >/dev/null`, { timeout: 5 * 60_000 });
  return stoppedCounter(s, name);
}

/** `podman container checkpoint --create-image IMAGE NAME`. Returns the counter at checkpoint time. */
export async function checkpointImage(s: Session, name: string, image: string): Promise<number> {
  await s.run(`podman container checkpoint --create-image ${sh(image)} ${sh(name)} >/dev/null`, { timeout: 5 * 60_000 });
  return stoppedCounter(s, name);
}

/**
 * Remove the container and every local image but the base image (a checkpoint image pulled or
 * created locally included), so a restore has to use what the registry or the archive holds.
 */
export async function removeContainerAndImages(s: Session, name: string): Promise<void> {
  await s.run(`podman rm --force --time 0 ${sh(name)} >/dev/null
    podman images --format '{{.Id}} {{.Repository}}:{{.Tag}}' | while read -r id ref; do
      [ "$ref" = ${sh(BASE_IMAGE)} ] || podman rmi --force "$id" >/dev/null
    done
    ! podman container exists ${sh(name)}`);
}

/** `podman container restore --import FILE` (FILE inside the root). Throws with Podman's message. */
export async function restoreImport(s: Session, file: string): Promise<void> {
  const r = await s.run(`podman container restore --import ${sh(file)}`, { check: false, timeout: 5 * 60_000 });
  check(r, `restoring ${file} with Podman failed`);
}

/**
 * `podman container restore REF` of a checkpoint image. Pulls REF first when `pull` is set
 * (otherwise Podman has to find the image itself). Throws with Podman's message.
 */
export async function restoreImage(s: Session, ref: string, opts: { pull?: boolean; name?: string } = {}): Promise<void> {
  if (opts.pull) check(await s.run(`podman pull --quiet ${sh(ref)}`, { check: false, timeout: 5 * 60_000 }), `pulling ${ref} with Podman failed`);
  const r = await s.run(`podman container restore ${opts.name ? `--name ${sh(opts.name)} ` : ''}${sh(ref)}`, { check: false, timeout: 5 * 60_000 });
  check(r, `restoring the checkpoint image ${ref} with Podman failed`);
}

/**
 * After a restore: the counter carries on past its checkpoint-time value, the checkpoint's
 * file-system change is there and its deleted file is still gone.
 */
export async function expectContinues(s: Session, name: string, atCheckpoint: number): Promise<number> {
  const deadline = Date.now() + 30_000;
  let n = -1;
  for (;;) {
    const st = await s.run(`podman inspect --format '{{.State.Status}}' ${sh(name)}`, { check: false });
    if (st.exitCode !== 0 || st.stdout.trim() !== 'running') {
      throw new E2EError(`the restored container ${name} is not running (${oneLine(st.stdout + st.stderr)})`);
    }
    n = await readCounter(s, name).catch(() => -1);
    if (n > atCheckpoint) break;
    if (n >= 0 && n < atCheckpoint) {
      throw new E2EError(`the restored ${name} counts ${n}, less than ${atCheckpoint} at checkpoint time: it started over instead of continuing`);
    }
    if (Date.now() > deadline) throw new E2EError(`the restored ${name} did not count past ${atCheckpoint} within 30 s (last read ${n})`);
    await sleep(300);
  }
  const fs = await execIn(s, name, 'cat /data/state.txt; if [ -e /etc/motd ]; then echo MOTD-PRESENT; else echo motd-deleted; fi');
  if (!fs.stdout.includes('written by the checkpointed container')) {
    throw new E2EError(`the restored ${name} lost the checkpoint's file-system change /data/state.txt: ${oneLine(fs.stdout + fs.stderr)}`);
  }
  if (!fs.stdout.includes('motd-deleted')) {
    throw new E2EError(`the restored ${name} has /etc/motd again, which the checkpointed container had deleted`);
  }
  return n;
}

/** For a counter started with memoryMB: ask the restored shell to re-hash its memory and compare. */
export async function expectMemoryIntact(s: Session, name: string): Promise<string> {
  const before = check(await execIn(s, name, 'cat /data/sum.before'), 'reading the memory checksum').stdout.trim();
  check(await execIn(s, name, 'rm -f /data/sum.after; touch /data/verify'));
  const deadline = Date.now() + 120_000;
  for (;;) {
    const r = await execIn(s, name, 'cat /data/sum.after 2>/dev/null');
    if (r.exitCode === 0 && r.stdout.trim()) {
      const after = r.stdout.trim();
      if (after !== before) throw new E2EError(`the restored ${name} holds different memory: md5 ${after} after, ${before} before the checkpoint`);
      return after;
    }
    if (Date.now() > deadline) throw new E2EError(`the restored ${name} did not re-hash its memory within 120 s`);
    await sleep(500);
  }
}

// --- raw CRIU --------------------------------------------------------------------------------------

export interface RawProcess {
  pid: number;
  /** Directory inside the root with `count` (and, after dump(), the CRIU images in `dump/`). */
  dir: string;
}

/**
 * Start a plain busybox loop (no container) in its own session, descriptors 0-2 on /dev/null,
 * cwd /, writing its counter to DIR/count.
 */
export async function startRawLoop(s: Session, dir: string): Promise<RawProcess> {
  const script = `echo $$ > ${dir}/pid; i=0; while :; do i=$((i+1)); echo $i > ${dir}/count; sleep 0.2; done`;
  // The loop's parent is a child subreaper (perl, from perl-base, calling prctl) that reaps the
  // loop and its `sleep` children as soon as CRIU kills them: CRIU can restore the loop under its
  // pid only once no process (not even a zombie child in its process group) holds that pid, and
  // orphans would go to this machine's init, which takes seconds to reap them.
  const subreaper = `my $nr = (POSIX::uname())[4] =~ /aarch64|arm64/ ? 167 : 157;
    syscall($nr, 36, 1, 0, 0, 0) == 0 or die "prctl(PR_SET_CHILD_SUBREAPER): $!";
    my $p = fork() // die "fork: $!"; if (!$p) { exec @ARGV or die "exec: $!" } 1 while wait() != -1;`;
  await s.run(`mkdir -p ${sh(dir)}; rm -f ${sh(dir)}/pid; cd /
    perl -MPOSIX -e ${sh(subreaper)} setsid /bin/busybox sh -c ${sh(script)} </dev/null >/dev/null 2>&1 &
    for _ in $(seq 1 50); do [ -s ${sh(dir)}/pid ] && break; sleep 0.1; done
    cat ${sh(dir)}/pid`);
  const pid = Number.parseInt((await readFile(s.hostPath(`${dir}/pid`), 'utf8')).trim(), 10);
  await waitFor(async () => (await rawCounter(s, dir)) >= 3, 20_000, `the raw loop in ${dir} did not count`);
  return { pid, dir };
}

export async function rawCounter(s: Session, dir: string): Promise<number> {
  const t = await readFile(s.hostPath(`${dir}/count`), 'utf8').catch(() => '');
  const n = Number.parseInt(t.trim(), 10);
  return Number.isFinite(n) ? n : -1;
}

/** `criu dump -t PID -D DIR` (the process is killed). Returns the counter at dump time. */
export async function criuDump(s: Session, p: RawProcess, imagesDir: string): Promise<number> {
  const r = await s.run(`mkdir -p ${sh(imagesDir)}; criu dump -t ${p.pid} -D ${sh(imagesDir)} -o dump.log -v4`, { check: false, timeout: 5 * 60_000 });
  if (r.exitCode !== 0) {
    const log = await s.run(`tail -n 30 ${sh(imagesDir)}/dump.log`, { check: false });
    throw new E2EError(`criu dump -t ${p.pid} failed (exit ${r.exitCode}): ${oneLine(r.stderr)}\n${log.stdout}`);
  }
  await waitFor(async () => !pidInUse(p.pid), 15_000, `pid ${p.pid} is still in use (by the process, a zombie or its group) after criu dump`);
  return rawCounter(s, p.dir);
}

/** `criu restore -D DIR -d`; throws with the end of CRIU's log. */
export async function criuRestore(s: Session, imagesDir: string): Promise<void> {
  const r = await s.run(`cd / && criu restore -D ${sh(imagesDir)} -d -o restore.log -v4`, { check: false, timeout: 5 * 60_000 });
  if (r.exitCode !== 0) {
    const log = await s.run(`tail -n 30 ${sh(imagesDir)}/restore.log`, { check: false });
    throw new E2EError(`criu restore -D ${imagesDir} failed (exit ${r.exitCode}): ${oneLine(r.stderr)}\n${log.stdout}`);
  }
}

/** The raw loop counts past its dump-time value again. */
export async function expectRawContinues(s: Session, p: RawProcess, atDump: number): Promise<number> {
  let n = -1;
  await waitFor(async () => {
    n = await rawCounter(s, p.dir);
    if (n >= 0 && n < atDump) throw new E2EError(`the restored loop counts ${n}, less than ${atDump} at dump time`);
    return n > atDump;
  }, 30_000, `the restored raw loop (pid ${p.pid}) did not count past ${atDump}`);
  return n;
}

/** True while the pid exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** True while any process (zombies included) has this pid, process group or session. */
export function pidInUse(pid: number): boolean {
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    let stat: string;
    try { stat = readFileSync(`/proc/${d}/stat`, 'utf8'); } catch { continue; }
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(d) === pid || Number(f[2]) === pid || Number(f[3]) === pid) return true;
  }
  return false;
}

export function killRaw(p: RawProcess): void {
  try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
}

export async function waitFor(cond: () => Promise<boolean>, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > deadline) throw new E2EError(`${what} within ${Math.round(ms / 1000)} s`);
    await sleep(200);
  }
}

/** sha256 of every regular file under a host directory, keyed by relative path. */
export async function treeDigest(dir: string): Promise<Map<string, string>> {
  const r = await execa('bash', ['-c', 'cd "$1" && find . -type f -print0 | sort -z | xargs -0r sha256sum', 'tree', dir], { reject: false });
  if (r.exitCode !== 0) throw new E2EError(`hashing ${dir}: ${r.stderr}`);
  const m = new Map<string, string>();
  for (const line of String(r.stdout).split('\n')) {
    const i = line.indexOf('  ');
    if (i > 0) m.set(line.slice(i + 2).replace(/^\.\//, ''), line.slice(0, i));
  }
  return m;
}

/** What a describe block of the suite works with: its session in the root, a registry, raw processes. */
export interface SuiteContext {
  readonly session: Session;
  readonly registry: Registry;
  /** Raw CRIU-restored processes the tests started; killed after each test. */
  readonly raws: RawProcess[];
}

/**
 * Registers the hooks every suite needs: a session and a registry for the block, containers and
 * raw processes removed after each test, both stopped at the end.
 */
export function useSession(): SuiteContext {
  let session: Session | undefined;
  let registry: Registry | undefined;
  const raws: RawProcess[] = [];
  beforeAll(async () => {
    session = await Session.start();
    registry = await startRegistry(session);
  });
  afterEach(async () => {
    await session?.run('podman rm --all --force --time 0 >/dev/null', { check: false });
    for (const p of raws.splice(0)) killRaw(p);
  });
  afterAll(async () => {
    await registry?.stop();
    await session?.stop();
  });
  const started = <T>(value: T | undefined): T => {
    if (value === undefined) throw new E2EError('the suite session is used before it started');
    return value;
  };
  return {
    get session() {
      return started(session);
    },
    get registry() {
      return started(registry);
    },
    raws,
  };
}
