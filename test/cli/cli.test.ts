import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { cp, mkdir, readdir, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { beforeAll, describe, expect, it } from 'vitest';
import { copy } from '../../src/commands/copy.js';
import { InspectResultSchema } from '../../src/commands/inspect.js';
import { push } from '../../src/commands/push.js';
import { reportError } from '../../src/cli/errors.js';
import { CkptError } from '../../src/errors.js';
import { interruptAfter } from '../helpers/interrupt.js';
import { CKPT, ckpt, extractFixture, fixture, tempDir } from '../helpers/tree.js';

describe('ckpt inspect', () => {
  for (const name of ['podman-counter.tar', 'podman-counter.tar.gz', 'podman-counter.tar.zst']) {
    it(`${name}: container, image, engine, processes and memory`, async () => {
      const { stdout, exitCode } = await ckpt(['inspect', fixture(name)]);
      expect(exitCode).toBe(0);
      expect(stdout).toMatch(/^Container\s+counter \(a1c43f3470e1\)$/m);
      expect(stdout).toMatch(/^Image\s+localhost\/bbox:motd \(79a2716c574c\)$/m);
      expect(stdout).toMatch(/^Engine\s+Podman$/m);
      expect(stdout).toMatch(/^Processes\s+2 \(busybox\[1\], busybox\[\d+\]\)$/m);
      expect(stdout).toMatch(/^Memory\s+\d+\.\d (KiB|MiB) in 2 page files$/m);
      expect(stdout).toMatch(/^Deleted files\s+\/etc\/motd$/m);
      expect(stdout).toMatch(/^Restorable by\s+podman$/m);
    });
  }

  it('the Podman image layout (--create-image) reads the same', async () => {
    const { stdout } = await ckpt(['inspect', `oci:${fixture('podman-image-layout')}:counter-ckpt`]);
    expect(stdout).toMatch(/^Container\s+counter/m);
    expect(stdout).toMatch(/^Image\s+localhost\/bbox:motd/m);
    expect(stdout).toMatch(/^Engine\s+Podman$/m);
    // It has no dump.log: CRIU's version is the one its annotations record.
    expect(stdout).toMatch(/^CRIU\s+4\.1\.1 \(image format 2\)$/m);
    // As is the node that made it, which a restoring node is compared with.
    expect(stdout).toMatch(/^Recorded node\s+kernel 6\.18\.44-fc-v769, debian 13, CRIU 4\.1\.1, cgroup v1, Podman 5\.4\.2$/m);
    const json = InspectResultSchema.parse(JSON.parse((await ckpt(['inspect', `oci:${fixture('podman-image-layout')}:counter-ckpt`, '--json'])).stdout));
    expect(json.image?.recordedHost).toMatchObject({ kernel: '6.18.44-fc-v769', criuVersion: '4.1.1', engineVersion: '5.4.2', cgroupVersion: 'v1' });
  });

  it('CRI-O and containerd checkpoints show their pod', async () => {
    const crio = await ckpt(['inspect', fixture('crio-counter.tar')]);
    expect(crio.stdout).toMatch(/^Engine\s+CRI-O$/m);
    expect(crio.stdout).toMatch(/^Pod\s+counter-pod \(namespace default, uid uid-counter-pod-1\)$/m);
    expect(crio.stdout).toMatch(/^CRIU\s+4\.1\.1 \(image format 2\)$/m);
    const containerd = await ckpt(['inspect', fixture('containerd-counter.tar')]);
    expect(containerd.stdout).toMatch(/^Engine\s+containerd$/m);
    expect(containerd.stdout).toMatch(/^Image\s+127\.0\.0\.1:52895\/bbox:latest/m);
  });

  it('a raw criu dump is a CRIU-only checkpoint with its process tree', async () => {
    const { stdout } = await ckpt(['inspect', fixture('criu-raw-shell'), '--tree']);
    expect(stdout).toMatch(/^Engine\s+CRIU only \(raw criu dump\)$/m);
    expect(stdout).not.toMatch(/^Container/m);
    // It records no time of its own: the one shown says where it comes from.
    expect(stdout).toMatch(/^Checkpointed\s+\S+ \(inventory\.img's modification time\)$/m);
    expect(stdout).toContain('Process tree:\nsh (pid 19228)\n└─ sleep (pid 19235)');
  });

  it("a pre-dump's pages (pre-checkpoint/) count in neither the memory's bytes nor its files", async () => {
    const dir = await extractFixture('podman-counter.tar');
    await cp(join(dir, 'checkpoint'), join(dir, 'pre-checkpoint'), { recursive: true });
    const { stdout, exitCode, stderr } = await ckpt(['inspect', dir, '--json']);
    expect(exitCode, stderr).toBe(0);
    expect(InspectResultSchema.parse(JSON.parse(stdout)).metadata.memory).toEqual({ bytes: 1052672, files: 2 });
  });

  it('--json follows schemas/inspect.schema.json', async () => {
    const { stdout } = await ckpt(['inspect', fixture('podman-counter.tar'), '--json']);
    const result = InspectResultSchema.parse(JSON.parse(stdout));
    expect(result.metadata).toMatchObject({
      engine: 'podman',
      container: { name: 'counter' },
      image: { name: 'localhost/bbox:motd' },
      memory: { bytes: 1052672, files: 2 },
      rootfsDiff: { files: 2, bytes: 8 },
      deletedFiles: ['/etc/motd'],
    });
    expect(result.metadata.processes.map((p) => p.pid)).toEqual([1, 14]);
  });
});

describe('ckpt build then inspect of the image', () => {
  let layout: string;
  beforeAll(async () => {
    layout = join(await tempDir(), 'layout');
    const built = await ckpt(['build', fixture('podman-counter.tar'), `oci:${layout}:counter`, '--json']);
    expect(built.exitCode, built.stderr).toBe(0);
  });

  it('names the index a containerd-style image is tagged by, beside its manifest', async () => {
    const built = await ckpt(['build', fixture('containerd-counter.tar'), `oci:${layout}:ctrd`, '--compat', 'containerd', '-q']);
    const index = built.stdout.trim();
    const json = InspectResultSchema.parse(JSON.parse((await ckpt(['inspect', `oci:${layout}:ctrd`, '--json'])).stdout));
    expect(json.image?.index).toBe(index);
    expect(json.image?.digest).not.toBe(index);
    expect((await ckpt(['inspect', `oci:${layout}:ctrd`])).stdout).toMatch(new RegExp(`^Index\\s+${index}$`, 'm'));
    // A plain manifest has no index.
    const plain = InspectResultSchema.parse(JSON.parse((await ckpt(['inspect', `oci:${layout}:counter`, '--json'])).stdout));
    expect(plain.image && 'index' in plain.image).toBe(false);
  });

  it('reads only the metadata layer: it works with the page and file-system layers gone', async () => {
    const { stdout: json } = await ckpt(['build', fixture('podman-counter.tar'), `oci:${layout}:counter`, '--json']);
    const built = JSON.parse(json) as { layers: Array<{ role: string; digest: string }> };
    for (const layer of built.layers.filter((l) => l.role !== 'metadata')) {
      await rm(join(layout, 'blobs', 'sha256', layer.digest.slice(7)));
    }
    const { stdout, exitCode, stderr } = await ckpt(['inspect', `oci:${layout}:counter`, '--json']);
    expect(exitCode, stderr).toBe(0);
    const result = InspectResultSchema.parse(JSON.parse(stdout));
    expect(result.metadata).toMatchObject({
      container: { name: 'counter' },
      memory: { bytes: 1052672, files: 2 },
      rootfsDiff: { files: 2, bytes: 8 },
      deletedFiles: ['/etc/motd'],
    });
    // rootfs-diff.tar's own size too, though its layer is gone: as the archive says it.
    const fromArchive = InspectResultSchema.parse(JSON.parse((await ckpt(['inspect', fixture('podman-counter.tar'), '--json'])).stdout));
    expect(result.metadata.rootfsDiff?.archiveBytes).toBe(3584);
    expect(result.metadata.rootfsDiff).toEqual(fromArchive.metadata.rootfsDiff);
    expect(result.image?.layers).toHaveLength(3);
  });

  it('-q prints the digest only', async () => {
    const { stdout } = await ckpt(['build', fixture('crio-counter.tar'), `oci:${layout}:crio`, '-q']);
    expect(stdout).toMatch(/^sha256:[a-f0-9]{64}$/);
  });
});

/** A directory to be the whole PATH, with these shell scripts as its only programs. */
async function onlyPrograms(work: string, programs: Record<string, string>): Promise<string> {
  const bin = join(work, 'bin');
  await mkdir(bin);
  for (const [name, script] of Object.entries(programs)) await writeFile(join(bin, name), `#!/bin/sh\n${script}\n`, { mode: 0o755 });
  return bin;
}

describe('command line', () => {
  it.each([['--help'], ['build', '--help'], ['inspect', '--help']])('%s', async (...args) => {
    const { stdout, exitCode } = await ckpt(args);
    expect(exitCode).toBe(0);
    expect(stdout).toContain('Exit codes:');
  });

  it.each([
    ['--help'],
    ['inspect', fixture('podman-counter.tar'), '--json'],
    ['build', fixture('podman-counter.tar'), 'oci:LAYOUT:t', '--json'],
  ])('a reader that leaves before the output (%s ...) ends nothing early and prints no trace', async (...args) => {
    const dir = await tempDir();
    const layout = join(dir, 'layout');
    const child = spawn('node', [CKPT, ...args.map((a) => a.replace('LAYOUT', layout))], { stdio: ['ignore', 'pipe', 'pipe'] });
    // Closed before the CLI has started: its first write meets a broken pipe.
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const [code] = (await once(child, 'close')) as [number | null];
    expect(stderr).toBe('');
    expect(code).toBe(0);
    if (args[0] === 'build') expect((await ckpt(['inspect', `oci:${layout}:t`])).exitCode).toBe(0);
  });

  it.each(['SIGINT', 'SIGTERM', 'SIGHUP'] as const)('%s stops a build: exit 130, one line, the new layout removed', async (name) => {
    // Memory that takes far longer to read than the test waits: 64 GiB of zeros, sparse.
    const slow = await extractFixture('podman-counter.tar');
    await truncate(join(slow, 'checkpoint/pages-1.img'), 64 * 2 ** 30);
    const work = await tempDir();
    const child = spawn('node', [CKPT, 'build', slow, `oci:${join(work, 'layout')}:t`], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    for (let waited = 0; !existsSync(join(work, 'layout', 'oci-layout')); waited += 10) {
      if (waited > 10_000) throw new Error(`the build made no layout: ${stderr}`);
      await sleep(10);
    }
    child.kill(name);
    const [code] = (await once(child, 'close')) as [number | null];
    expect(code, stderr).toBe(130);
    expect(stderr).toBe(`ckpt: ${slow}: interrupted (${name})\n`);
    expect(await readdir(work)).toEqual([]);
  });

  it('SIGINT while --password-stdin waits for a password that never comes: exit 130 at once', async () => {
    const { code, stderr, ms } = await interruptAfter(['login', 'localhost:1', '-u', 'bob', '--password-stdin'], 1000);
    expect(code, stderr).toBe(130);
    expect(ms).toBeLessThan(1000);
    expect(stderr).toBe('ckpt: --password-stdin: interrupted (SIGINT)\n');
  });

  it('a second SIGINT ends a command the first could not stop (an open() of a FIFO no one writes)', async () => {
    const fifo = join(await tempDir(), 'checkpoint.tar');
    await execa('mkfifo', [fifo]);
    const child = spawn(process.execPath, [CKPT, 'inspect', fifo], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    const closed = once(child, 'close') as Promise<[number | null, string | null]>;
    await sleep(500);
    child.kill('SIGINT');
    await sleep(300);
    expect(child.exitCode, 'the first SIGINT cannot end it').toBeNull();
    child.kill('SIGINT');
    const [, signal] = await closed;
    expect(signal).toBe('SIGINT');
    expect(stderr.trim()).toBe('ckpt: interrupted again: stopped at once, without cleaning up');
  });

  it("a build that fails while this node's programs are asked, some not installed, signals no process but its own children", async () => {
    // Node's kill of a child that failed to spawn goes to whatever its pid field holds: 0 (the
    // caller's process group: its shell, its CI job) or any number, when the abort meets the failed
    // spawn. strace lists every kill sent, and every program started: none may be one not installed.
    const work = await tempDir();
    // podman alone (still answering when the build fails): criu, runc and conmon are not installed.
    const bin = await onlyPrograms(work, { podman: 'exec /bin/sleep 1' });
    const truncated = join(work, 'truncated.tar.zst');
    await writeFile(truncated, (await readFile(fixture('podman-counter.tar.zst'))).subarray(0, 300_000));
    const trace = join(work, 'trace');
    const command = ['env', `PATH=${bin}`, process.execPath, CKPT, 'build', truncated, `oci:${join(work, 'layout')}:t`, '--no-cache'];
    const run = await execa('strace', ['-f', '-qq', '-e', 'trace=kill,execve', '-o', trace, ...command], { reject: false });
    expect(run.exitCode, run.stderr).toBe(3);
    const lines = (await readFile(trace, 'utf8')).split('\n').filter(Boolean);
    // Every process and thread strace followed: ckpt's and its children's.
    const traced = new Set(lines.map((line) => line.split(/\s+/)[0]));
    const targets = lines.flatMap((line) => /\bkill\((-?\d+),/.exec(line)?.[1] ?? []);
    expect(targets.filter((pid) => !traced.has(pid))).toEqual([]);
    expect(lines.filter((line) => line.includes('--version') && line.includes('ENOENT'))).toEqual([]);
    expect(existsSync(join(work, 'layout'))).toBe(false);
  });

  it("SIGTERM while this node's programs answer ends the build with 130 and removes the layout", async () => {
    const work = await tempDir();
    const asked = join(work, 'asked');
    const bin = await onlyPrograms(work, { podman: 'exec /bin/sleep 5', runc: `/usr/bin/touch "${asked}"; exec /bin/sleep 5` });
    const child = spawn(process.execPath, [CKPT, 'build', fixture('podman-counter.tar'), `oci:${join(work, 'layout')}:t`, '--no-cache'], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: bin },
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
    for (let waited = 0; !existsSync(asked); waited += 10) {
      if (waited > 10_000) throw new Error(`runc --version was never run: ${stderr}`);
      await sleep(10);
    }
    child.kill('SIGTERM');
    const [code] = (await once(child, 'close')) as [number | null];
    expect(code, stderr).toBe(130);
    expect(await readdir(work)).toEqual(['asked', 'bin']);
  });

  it("--version is the package's, even where npm names another project's (npx, npm run)", async () => {
    const { version } = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    const run = await ckpt(['--version'], { env: { npm_package_version: '7.7.7' } });
    expect(run.stdout.trim()).toBe(version);
  });

  it('a usage error is one line naming the command, and help exits 0 however asked', async () => {
    const bad = await ckpt(['build', fixture('podman-counter.tar'), 'oci:x:t', '--bogus']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toBe("ckpt: build: unknown option '--bogus' (see ckpt build --help)");
    const missing = await ckpt(['pull', 'registry.example/x:t']);
    expect(missing.exitCode).toBe(2);
    expect(missing.stderr.split('\n')).toHaveLength(1);
    // The command is the first word, whatever words follow.
    expect((await ckpt(['push', 'build', 'host/x', '--bogus'])).stderr).toBe("ckpt: push: unknown option '--bogus' (see ckpt push --help)");
    // An option given where it does not exist (copy's --src-creds to push) is named without its value.
    const misplaced = await ckpt(['push', '--src-creds=alice:S3cret', 'build', 'host/x']);
    expect(misplaced.stderr).toBe("ckpt: push: unknown option '--src-creds' (see ckpt push --help)");
    for (const token of ["--src-creds=alice:se'cr3t", '-pS3cret']) {
      const run = await ckpt(['push', token, 'build', 'host/x']);
      expect(run.stderr).toMatch(/^ckpt: push: unknown option '(--src-creds|-p)' \(see ckpt push --help\)$/);
    }
    // No command: the help, and nothing after it.
    const none = await ckpt([]);
    expect(none.exitCode).toBe(2);
    expect(none.stderr).not.toContain('outputHelp');
    expect(none.stderr.trim().split('\n').at(-1)).toMatch(/130\s+interrupted/);
    for (const args of [['help'], ['help', 'build'], ['build', '--help']]) {
      const help = await ckpt(args);
      expect(help.exitCode, args.join(' ')).toBe(0);
    }
  });

  it('logout takes a name alone as a host, not a Docker Hub repository', async () => {
    const authFile = join(await tempDir(), 'auth.json');
    await writeFile(authFile, JSON.stringify({ auths: { myregistry: { auth: 'YTpi' }, 'docker.io': { auth: 'YTpi' } } }));
    const run = await ckpt(['logout', 'myregistry', '--authfile', authFile]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(Object.keys((JSON.parse(await readFile(authFile, 'utf8')) as { auths: object }).auths)).toEqual(['docker.io']);
  });

  it('a failure is one line, even when a lower layer ended its message with a newline', () => {
    const lines: string[] = [];
    const message = 'GET https://10.0.0.1:5000/v2/: EPROTO: 40C8:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:\n';
    expect(reportError(new CkptError('NETWORK', message, { subject: '10.0.0.1:5000' }), (line) => lines.push(line))).toBe(6);
    expect(lines).toEqual([`ckpt: 10.0.0.1:5000: ${message.trim()}`]);
    // Credentials a lower layer quoted are not printed.
    reportError(new Error('GET https://alice:s3cr3t@host/v2/ failed with Authorization: Basic YWxpY2U6czNjcjN0'), (line) => lines.push(line));
    expect(lines[1]).toBe('ckpt: GET https://[redacted]@host/v2/ failed with Authorization: Basic <redacted>');
  });

  it('a created annotation that is not an RFC 3339 time is a usage error; one that is, skopeo reads', async () => {
    const layout = join(await tempDir(), 'layout');
    const bad = await ckpt(['build', fixture('podman-counter.tar'), `oci:${layout}:t`, '--annotation', 'org.opencontainers.image.created=notadate']);
    expect(bad.exitCode).toBe(2);
    expect(bad.stderr).toContain('must be an RFC 3339 time');
    expect(existsSync(layout)).toBe(false);
    const good = await ckpt(['build', fixture('podman-counter.tar'), `oci:${layout}:t`, '--annotation', 'org.opencontainers.image.created=2026-01-02T03:04:05+01:00']);
    expect(good.exitCode, good.stderr).toBe(0);
    const inspected = await execa('skopeo', ['inspect', `oci:${layout}:t`]);
    expect(JSON.parse(inspected.stdout)).toMatchObject({ Created: '2026-01-02T03:04:05+01:00' });
  });

  it('--concurrency 0 is a usage error for every command that moves blobs, and the library refuses it too', async () => {
    const work = await tempDir();
    expect((await ckpt(['build', fixture('podman-counter.tar'), `oci:${join(work, 'a')}:t`])).exitCode).toBe(0);
    for (const args of [
      ['copy', `oci:${join(work, 'a')}:t`, `oci:${join(work, 'b')}:t`],
      ['push', `oci:${join(work, 'a')}:t`, `oci:${join(work, 'b')}:t`],
      ['push', fixture('podman-counter.tar'), `oci:${join(work, 'b')}:t`],
      ['pull', `oci:${join(work, 'a')}:t`, join(work, 'b')],
    ]) {
      const run = await ckpt([...args, '--concurrency', '0']);
      expect(run.exitCode, args[0]).toBe(2);
      expect(run.stderr).toContain('at least 1');
    }
    await expect(copy(`oci:${join(work, 'a')}:t`, `oci:${join(work, 'b')}:t`, { concurrency: 0 })).rejects.toMatchObject({ code: 'USAGE' });
    await expect(push(`oci:${join(work, 'a')}:t`, `oci:${join(work, 'b')}:t`, { concurrency: 0 })).rejects.toMatchObject({ code: 'USAGE' });
    expect(await readdir(work)).toEqual(['a']);
  });

  it.each(['containerd-counter.tar', 'podman-counter.tar'])('--platform asked for must be the image\'s, with one image at the tag (%s)', async (name) => {
    const work = await tempDir();
    const layout = `oci:${join(work, 'layout')}:t`;
    // containerd's: an index of one image; Podman's: the manifest itself, whose config says its platform.
    expect((await ckpt(['build', fixture(name), layout])).exitCode).toBe(0);
    for (const platform of ['linux/arm64', 'windows/amd64']) {
      const pulled = await ckpt(['pull', layout, join(work, 'out'), '--platform', platform]);
      expect(pulled.exitCode, pulled.stderr).toBe(4);
      expect(pulled.stderr).toBe(`ckpt: ${layout}: no image for ${platform}`);
      expect((await ckpt(['inspect', layout, '--platform', platform])).exitCode).toBe(4);
    }
    expect((await ckpt(['inspect', layout, '--platform', 'linux/arm64/v8/extra'])).exitCode).toBe(2);
    expect(await readdir(work)).toEqual(['layout']);
    expect((await ckpt(['pull', layout, join(work, 'out'), '--platform', 'linux/amd64'])).exitCode).toBe(0);
  });

  it('push of a checkpoint image refuses the image-making flags it would ignore', async () => {
    const work = await tempDir();
    expect((await ckpt(['build', fixture('podman-counter.tar'), `oci:${join(work, 'a')}:t`])).exitCode).toBe(0);
    const refused = await ckpt(['push', `oci:${join(work, 'a')}:t`, `oci:${join(work, 'b')}:t`, '--compression', 'gzip', '--annotation', 'k=v']);
    expect(refused.exitCode).toBe(2);
    expect(refused.stderr).toContain('--compression (compression), --annotation (annotations) would change nothing');
    expect(existsSync(join(work, 'b'))).toBe(false);
    // Defaults are not flags given: a plain push copies it.
    expect((await ckpt(['push', `oci:${join(work, 'a')}:t`, `oci:${join(work, 'b')}:t`])).exitCode).toBe(0);
  });

  it('an unknown option is a usage error', async () => {
    const { exitCode, stderr } = await ckpt(['build', '--frobnicate', 'a', 'b']);
    expect(exitCode).toBe(2);
    expect(stderr).toContain("unknown option '--frobnicate'");
  });

  it('-q with --json is a usage error, not one of them quietly winning', async () => {
    const work = await tempDir();
    for (const command of ['build', 'push', 'pull', 'copy']) {
      const { exitCode, stderr } = await ckpt([command, fixture('crio-counter.tar'), `oci:${join(work, command)}:t`, '-q', '--json']);
      expect(exitCode, command).toBe(2);
      expect(stderr).toContain("option '--json' cannot be used with option '-q, --quiet'");
    }
    expect(await readdir(work)).toEqual([]);
  });

  it('a bad compression is a usage error', async () => {
    const { exitCode, stderr } = await ckpt(['build', fixture('crio-counter.tar'), 'oci:/tmp/never', '--compression', 'lz4']);
    expect(exitCode).toBe(2);
    expect(stderr).toContain('expected one of zstd, gzip, none');
  });

  it('a level for uncompressed layers, or a layer size past 2^53, is a usage error', async () => {
    const layout = join(await tempDir(), 'layout');
    const level = await ckpt(['build', fixture('crio-counter.tar'), `oci:${layout}:t`, '--compression', 'none', '--level', '5']);
    expect(level.exitCode).toBe(2);
    expect(level.stderr).toContain('not to uncompressed layers');
    const size = await ckpt(['build', fixture('crio-counter.tar'), `oci:${layout}:t`, '--max-layer-size', '99999999999999999999']);
    expect(size.exitCode).toBe(2);
    expect(existsSync(layout)).toBe(false);
  });

  it('bad input exits 3 with one line naming the input', async () => {
    const dir = await tempDir();
    const { exitCode, stderr } = await ckpt(['inspect', dir]);
    expect(exitCode).toBe(3);
    expect(stderr).toBe(`ckpt: ${dir}: not a checkpoint: no CRIU inventory.img (neither at the top nor in checkpoint/)`);
  });

  it('a missing tag exits 4', async () => {
    const { exitCode, stderr } = await ckpt(['inspect', `oci:${fixture('podman-image-layout')}:nope`]);
    expect(exitCode).toBe(4);
    expect(stderr).toMatch(/no image tagged "nope"/);
  });
});
