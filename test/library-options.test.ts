import { randomBytes } from 'node:crypto';
import { readFile, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { build, BuildCache, copy, inspect, login, logout, pull, push, type ProgressEvent } from '../src/index.js';
import { THREADED_MIN_SIZE } from '../src/unpack/plan.js';
import { rejection } from './helpers/rejection.js';
import { buildImage } from './unpack/helpers.js';
import { fixture, tempDir } from './helpers/tree.js';

const SOURCE = fixture('podman-counter.tar');
const IMAGE = `oci:${fixture('podman-image-layout')}:counter-ckpt`;

/** What a JavaScript caller may pass that TypeScript would have refused. */
const loose = <T>(value: unknown): T => value as T;

describe('options a JavaScript caller gets wrong: USAGE at once, nothing written', () => {
  const cases: Array<[string, (dest: string) => Promise<unknown>, RegExp]> = [
    ['cache: false', (dest) => build(SOURCE, dest, loose({ cache: false })), /option cache: expected a BuildCache/],
    ["compat: 'foo'", (dest) => build(SOURCE, dest, loose({ compat: 'foo' })), /option compat/],
    ["compression: 'lz4'", (dest) => push(SOURCE, dest, loose({ compression: 'lz4' })), /option compression/],
    ['an annotation that is not a string', (dest) => build(SOURCE, dest, loose({ annotations: { 'com.example.n': 1 } })), /option annotations\.com\.example\.n/],
    ['annotations as a string', (dest) => build(SOURCE, dest, loose({ annotations: 'a=b' })), /option annotations/],
    ['signal: {}', (dest) => build(SOURCE, dest, loose({ signal: { aborted: false } })), /option signal: expected an AbortSignal/],
    ["onProgress: 'yes'", (dest) => build(SOURCE, dest, loose({ onProgress: 'yes' })), /option onProgress: expected a function/],
    ['chunkSize: 5', (dest) => push(SOURCE, dest, { chunkSize: 5 }), /option chunkSize: expected at least 1024/],
    ['no source', (dest) => build(loose(undefined), dest), /source must be a non-empty string, not undefined/],
    ['a number as the source', (dest) => pull(loose(42), dest.slice(4)), /source must be a non-empty string, not 42/],
    ['options as a string', (dest) => copy(IMAGE, dest, loose('fast')), /options must be an object/],
    // Checked before the source is opened: a missing one would say NOT_FOUND first.
    ['level: 99, with a source that is not there', (dest) => build('/nonexistent/checkpoint.tar', dest, { level: 99 }), /compression level for zstd/],
    ['concurrency: 0, for a registry that is not there', (dest) => pull('127.0.0.1:9/ckpt/none:v1', dest.slice(4), { concurrency: 0 }), /concurrency must be/],
    // A misspelt name is refused, not ignored while the command does something else.
    ['compresion (a typo)', (dest) => build(SOURCE, dest, loose({ compresion: 'gzip' })), /unknown option "compresion"/],
    ['tag (a build takes it in the destination)', (dest) => push(SOURCE, dest, loose({ tag: 'v2' })), /unknown option "tag"/],
    ['platform, to copy', (dest) => copy(IMAGE, dest, loose({ platform: { os: 'linux', architecture: 'arm64' } })), /unknown option "platform"/],
    ['plainHTTP, to pull', (dest) => pull(IMAGE, dest.slice(4), loose({ plainHTTP: true })), /unknown option "plainHTTP"/],
    ['creds, to inspect', () => inspect(IMAGE, loose({ creds: 'a:b' })), /unknown option "creds"/],
    ["copy's source: { authfile }", (dest) => copy(IMAGE, dest, loose({ source: { authfile: '/tmp/x.json' } })), /unknown option "source\.authfile"/],
    // Values of every option, nested ones too.
    ["copy's source: { plainHttp: 'yes' }", (dest) => copy(IMAGE, dest, loose({ source: { plainHttp: 'yes' } })), /option source\.plainHttp/],
    ["platform as the CLI's string", (dest) => pull(IMAGE, dest.slice(4), loose({ platform: 'linux/arm64' })), /option platform/],
    ["retry: 'x'", () => inspect(IMAGE, loose({ retry: 'x' })), /option retry/],
    ['credentialsFor: 5', () => inspect(IMAGE, loose({ credentialsFor: 5 })), /option credentialsFor/],
    ['chunkSize: 1e12', (dest) => push(SOURCE, dest, { chunkSize: 1e12 }), /option chunkSize: expected at most 1 GiB/],
    ['meter, which inspect counts itself', () => inspect(IMAGE, loose({ meter: {} })), /unknown option "meter"/],
    ['login with a number as the user', () => login('127.0.0.1:9', loose({ username: 5, password: 'p' })), /option username/],
  ];
  for (const [what, run, message] of cases) {
    it(what, async () => {
      const dir = join(await tempDir(), 'layout');
      const started = Date.now();
      const err = await rejection(run(`oci:${dir}:t`));
      expect(err.code, err.message).toBe('USAGE');
      expect(err.exitCode).toBe(2);
      expect(err.message).toMatch(message);
      expect(Date.now() - started).toBeLessThan(1000);
      await expect(stat(dir)).rejects.toThrow(/ENOENT/);
    });
  }

  it('a BuildCache without a directory is refused where it is made, not after the build tagged its image', () => {
    expect(() => new BuildCache(loose({ dir: '/tmp/x' }))).toThrow(/BuildCache directory must be a non-empty string/);
  });

  it('logout with a misspelt authFile refuses, and leaves the auth files alone', async () => {
    const home = await tempDir();
    const authFile = join(home, 'auth.json');
    const entry = JSON.stringify({ auths: { 'registry.example.com': { auth: Buffer.from('u:p').toString('base64') } } });
    await writeFile(authFile, entry);
    const env = { REGISTRY_AUTH_FILE: authFile };
    const err = await rejection(logout('registry.example.com', loose({ authfile: join(home, 'other.json'), env, home })));
    expect(err.code).toBe('USAGE');
    expect(err.message).toMatch(/unknown option "authfile"/);
    expect(await readFile(authFile, 'utf8')).toBe(entry);
    // A signal it takes, as every command does.
    expect(await logout('registry.example.com', { env, home, signal: new AbortController().signal })).toBe(true);
  });

  it('login and inspect without their arguments', async () => {
    expect((await rejection(login('127.0.0.1:9', loose(undefined)))).code).toBe('USAGE');
    expect((await rejection(inspect(loose(undefined)))).code).toBe('USAGE');
  });
});

describe('a caller that aborts: ABORTED, whatever the signal carries', () => {
  const signals: Array<[string, () => Promise<AbortSignal>]> = [
    ['AbortSignal.timeout()', async () => {
      const signal = AbortSignal.timeout(1);
      await new Promise((r) => setTimeout(r, 20));
      return signal;
    }],
    ['abort(new Error(...))', () => {
      const controller = new AbortController();
      controller.abort(new Error('the caller gave up'));
      return Promise.resolve(controller.signal);
    }],
  ];
  for (const [what, signal] of signals) {
    it(`${what}: build, push, pull, copy, inspect of a directory and of an archive`, async () => {
      const work = await tempDir();
      const dir = join(work, 'dir');
      await pull(IMAGE, dir);
      const runs: Array<[string, (s: AbortSignal) => Promise<unknown>]> = [
        ['build', (s) => build(SOURCE, `oci:${join(work, 'b')}:t`, { signal: s })],
        ['push', (s) => push(SOURCE, `oci:${join(work, 'p')}:t`, { signal: s })],
        ['pull', (s) => pull(IMAGE, join(work, 'out'), { signal: s })],
        ['copy', (s) => copy(IMAGE, `oci:${join(work, 'c')}:t`, { signal: s })],
        ['inspect a directory', (s) => inspect(dir, { signal: s })],
        ['inspect an archive', (s) => inspect(SOURCE, { signal: s })],
      ];
      for (const [name, run] of runs) {
        const err = await rejection(run(await signal()));
        expect(err.code, `${name}: ${err.message}`).toBe('ABORTED');
        expect(err.exitCode).toBe(130);
        expect(err.subject, name).toBe(name.startsWith('inspect a directory') ? dir : name === 'pull' || name === 'copy' ? IMAGE : SOURCE);
      }
      for (const made of ['b', 'p', 'out', 'c']) await expect(stat(join(work, made))).rejects.toThrow(/ENOENT/);
    });
  }

  it('aborted at any moment of an inspect or a build, with its own reason: ABORTED or done', async () => {
    const work = await tempDir();
    let aborted = 0;
    for (let turns = 0; turns < 60; turns++) {
      const controller = new AbortController();
      const running = turns % 2 ? inspect(SOURCE, { signal: controller.signal }) : build(SOURCE, `oci:${join(work, `l${turns}`)}:t`, { signal: controller.signal, hostInfo: false });
      for (let i = 0; i < turns; i++) await new Promise((r) => setImmediate(r));
      controller.abort(new Error('the caller gave up'));
      const err = await running.then(() => undefined, (e: unknown) => e);
      if (err === undefined) continue;
      aborted++;
      expect(err, `after ${turns} turns: ${String(err)}`).toMatchObject({ code: 'ABORTED', subject: SOURCE });
    }
    expect(aborted).toBeGreaterThan(10);
  });

  it('aborted while a layer decodes on a worker: ABORTED, naming the image pulled, not the blob', async () => {
    const work = await tempDir();
    const { layout } = await buildImage(join(work, 'layout'), [
      { compression: 'zstd', entries: [{ name: 'checkpoint/pages-1.img', mode: 0o644, mtime: new Date(0), body: randomBytes(THREADED_MIN_SIZE + (8 << 20)) }] },
    ]);
    const source = `oci:${layout.dir}:latest`;
    const controller = new AbortController();
    const onProgress = (e: ProgressEvent) => {
      if (e.state === 'progress') controller.abort();
    };
    const err = await rejection(pull(source, join(work, 'out'), { signal: controller.signal, onProgress }));
    expect(err).toMatchObject({ code: 'ABORTED', subject: source });
  });

  it('a build the cache already holds, aborted: ABORTED, and no tag', async () => {
    const work = await tempDir();
    const cache = new BuildCache(join(work, 'cache'));
    const layout = join(work, 'layout');
    await build(SOURCE, `oci:${layout}:first`, { cache });
    const controller = new AbortController();
    controller.abort();
    expect((await rejection(build(SOURCE, `oci:${layout}:second`, { cache, signal: controller.signal }))).code).toBe('ABORTED');
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ annotations?: Record<string, string> }> };
    expect(index.manifests.map((m) => m.annotations?.['org.opencontainers.image.ref.name'])).toEqual(['first']);
  });
});

describe('a progress callback that throws', () => {
  it('fails the command with its error, the process goes on, nothing is left', async () => {
    const work = await tempDir();
    const mine = new Error('a bug in my progress bar');
    let events = 0;
    await build(SOURCE, `oci:${join(work, 'count')}:t`, { hostInfo: false, onProgress: () => void events++ });
    let seen = 0;
    const commands: Array<[string, () => Promise<unknown>]> = [
      ['build', () => build(SOURCE, `oci:${join(work, 'b')}:t`, { hostInfo: false, onProgress: (e) => { if (e.id?.includes('pages')) throw mine; } })],
      ['pull', () => pull(IMAGE, join(work, 'out'), { onProgress: () => { throw mine; } })],
      // An async callback that rejects.
      ['copy', () => copy(IMAGE, `oci:${join(work, 'c')}:t`, { onProgress: async () => { await Promise.resolve(); throw mine; } })],
    ];
    const uncaught: unknown[] = [];
    const onUncaught = (err: unknown): void => void uncaught.push(err);
    process.on('uncaughtException', onUncaught);
    try {
      for (const [name, run] of commands) {
        const err = await run().then(() => undefined, (e: unknown) => e);
        expect(err, name).toBe(mine);
      }
    } finally {
      process.off('uncaughtException', onUncaught);
    }
    expect(uncaught).toEqual([]);
    for (const made of ['b', 'out', 'c']) await expect(stat(join(work, made))).rejects.toThrow(/ENOENT/);
    // At the very last event, when nothing is left to stop: the command still fails with it.
    const last = build(SOURCE, `oci:${join(work, 'last')}:t`, { hostInfo: false, onProgress: () => { if (++seen === events) throw mine; } });
    expect(await last.then(() => undefined, (e: unknown) => e)).toBe(mine);
    // An async callback that rejects well after the last event: the command waits for it.
    let copyEvents = 0;
    await copy(IMAGE, `oci:${join(work, 'count2')}:t`, { onProgress: () => void copyEvents++ });
    let copySeen = 0;
    const late = copy(IMAGE, `oci:${join(work, 'late')}:t`, {
      onProgress: async () => {
        if (++copySeen < copyEvents) return;
        await new Promise((r) => setTimeout(r, 300));
        throw mine;
      },
    });
    expect(await late.then(() => undefined, (e: unknown) => e)).toBe(mine);
  });
});
