import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { findCredential, type CredentialOptions } from '../../src/registry/credentials.js';
import { rejection } from '../helpers/rejection.js';

let root: string;
let home: string;
let runtimeDir: string;
let env: NodeJS.ProcessEnv;

/** A fake docker-credential-test: answers by server URL and logs what it was asked. */
const HELPER = `#!/bin/sh
read -r server
echo "$1 $server" >> "$(dirname "$0")/calls.log"
case "$server" in
  registry.example.com) echo '{"ServerURL":"registry.example.com","Username":"helper-user","Secret":"helper-pass"}' ;;
  https://index.docker.io/v1/) echo '{"ServerURL":"https://index.docker.io/v1/","Username":"hub-user","Secret":"hub-pass"}' ;;
  docker.io) echo '{"ServerURL":"docker.io","Username":"podman-hub-user","Secret":"podman-hub-pass"}' ;;
  token.example.com) echo '{"ServerURL":"token.example.com","Username":"<token>","Secret":"refresh-123"}' ;;
  broken.example.com) echo 'keychain locked'; exit 3 ;;
  garbage.example.com) echo 'SECRET-GARBAGE' ;;
  hang.example.com) exec sleep 30 ;;
  *) echo 'credentials not found in native keychain'; exit 1 ;;
esac
`;

const b64 = (text: string) => Buffer.from(text).toString('base64');

async function writeJson(file: string, value: unknown): Promise<void> {
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, JSON.stringify(value));
}

const runtimeAuth = () => join(runtimeDir, 'containers/auth.json');
const configAuth = () => join(home, '.config/containers/auth.json');
const dockerConfig = () => join(home, '.docker/config.json');

function find(registry: string, options: CredentialOptions = {}) {
  return findCredential(registry, { env, home, ...options });
}

async function helperCalls(): Promise<string[]> {
  const log = await readFile(join(root, 'bin/calls.log'), 'utf8').catch(() => '');
  return log.split('\n').filter(Boolean);
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'ckpt-credentials-'));
  home = join(root, 'home');
  runtimeDir = join(root, 'run');
  await mkdir(runtimeDir, { recursive: true });
  await mkdir(join(root, 'bin'));
  await writeFile(join(root, 'bin/docker-credential-test'), HELPER);
  await chmod(join(root, 'bin/docker-credential-test'), 0o755);
  // Never the caller's environment: no REGISTRY_AUTH_FILE, DOCKER_CONFIG or real runtime directory.
  env = { PATH: `${join(root, 'bin')}:/usr/bin:/bin`, XDG_RUNTIME_DIR: runtimeDir };
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('auth file sources', () => {
  it('finds nothing when no file exists', async () => {
    expect(await find('registry.example.com')).toBeUndefined();
  });

  it('reads base64 user:pass, splitting at the first colon only', async () => {
    await writeJson(runtimeAuth(), { auths: { 'registry.example.com': { auth: b64('alice:pa:ss') } } });
    expect(await find('registry.example.com')).toEqual({ username: 'alice', password: 'pa:ss' });
    expect(await find('other.example.com')).toBeUndefined();
  });

  it('prefers the runtime file, then ~/.config/containers, then ~/.docker', async () => {
    await writeJson(runtimeAuth(), { auths: { 'a.example.com': { auth: b64('run:1') } } });
    await writeJson(configAuth(), { auths: { 'a.example.com': { auth: b64('config:2') }, 'b.example.com': { auth: b64('config:2') } } });
    await writeJson(dockerConfig(), {
      auths: { 'a.example.com': { auth: b64('docker:3') }, 'b.example.com': { auth: b64('docker:3') }, 'c.example.com': { auth: b64('docker:3') } },
    });
    expect(await find('a.example.com')).toEqual({ username: 'run', password: '1' });
    expect(await find('b.example.com')).toEqual({ username: 'config', password: '2' });
    expect(await find('c.example.com')).toEqual({ username: 'docker', password: '3' });
  });

  it('honours XDG_CONFIG_HOME and lets DOCKER_CONFIG replace ~/.docker', async () => {
    await writeJson(join(root, 'xdg/containers/auth.json'), { auths: { 'a.example.com': { auth: b64('xdg:1') } } });
    await writeJson(join(root, 'dockercfg/config.json'), { auths: { 'b.example.com': { auth: b64('dc:2') } } });
    await writeJson(dockerConfig(), { auths: { 'c.example.com': { auth: b64('home:3') } } });
    env.XDG_CONFIG_HOME = join(root, 'xdg');
    env.DOCKER_CONFIG = join(root, 'dockercfg');
    expect(await find('a.example.com')).toEqual({ username: 'xdg', password: '1' });
    expect(await find('b.example.com')).toEqual({ username: 'dc', password: '2' });
    expect(await find('c.example.com')).toBeUndefined();
  });

  it('reads $REGISTRY_AUTH_FILE alone, as Podman does', async () => {
    const named = join(root, 'named.json');
    await writeJson(named, { auths: { 'a.example.com': { auth: b64('named:1') } } });
    await writeJson(runtimeAuth(), { auths: { 'a.example.com': { auth: b64('run:2') }, 'b.example.com': { auth: b64('run:2') } } });
    env.REGISTRY_AUTH_FILE = named;
    expect(await find('a.example.com')).toEqual({ username: 'named', password: '1' });
    expect(await find('b.example.com')).toBeUndefined();
  });

  it('lets --authfile win over $REGISTRY_AUTH_FILE', async () => {
    const explicit = join(root, 'explicit.json');
    await writeJson(explicit, { auths: { 'a.example.com': { auth: b64('explicit:1') } } });
    await writeJson(join(root, 'named.json'), { auths: { 'a.example.com': { auth: b64('named:2') } } });
    env.REGISTRY_AUTH_FILE = join(root, 'named.json');
    expect(await find('a.example.com', { authFile: explicit })).toEqual({ username: 'explicit', password: '1' });
  });

  it('refuses an auth file named on purpose that does not exist, as Podman does (not anonymous access)', async () => {
    const missing = join(root, 'missing.json');
    await writeJson(runtimeAuth(), { auths: { 'a.example.com': { auth: b64('run:2') } } });
    await expect(find('a.example.com', { authFile: missing })).rejects.toMatchObject({ code: 'NOT_FOUND', message: expect.stringContaining(missing) });
    env.REGISTRY_AUTH_FILE = missing;
    await expect(find('a.example.com')).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('skips empty marker entries and moves on to the next file', async () => {
    await writeJson(runtimeAuth(), { auths: { 'a.example.com': {} } });
    await writeJson(dockerConfig(), { auths: { 'a.example.com': { auth: b64('docker:1') } } });
    expect(await find('a.example.com')).toEqual({ username: 'docker', password: '1' });
  });

  it('skips null entries, as Podman does, instead of refusing the file', async () => {
    await writeJson(runtimeAuth(), { auths: { 'a.example.com': { auth: b64('alice:1') }, 'other.example.com': null, 'a.example.com/team': null } });
    expect(await find('a.example.com')).toEqual({ username: 'alice', password: '1' });
    expect(await find('a.example.com', { repository: 'team/app' })).toEqual({ username: 'alice', password: '1' });
    expect(await find('other.example.com')).toBeUndefined();
  });

  it('returns identity tokens', async () => {
    await writeJson(runtimeAuth(), {
      auths: { 'a.example.com': { auth: b64('bob:'), identitytoken: 'refresh-abc' }, 'b.example.com': { identitytoken: 'refresh-def' } },
    });
    expect(await find('a.example.com')).toEqual({ username: 'bob', identityToken: 'refresh-abc' });
    expect(await find('b.example.com')).toEqual({ identityToken: 'refresh-def' });
  });

  it('reads an empty file as an empty configuration, like Docker', async () => {
    await mkdir(dirname(runtimeAuth()), { recursive: true });
    await writeFile(runtimeAuth(), '\n');
    expect(await find('a.example.com')).toBeUndefined();
  });
});

describe('key matching', () => {
  it('prefers the most specific path-scoped key for a repository', async () => {
    await writeJson(runtimeAuth(), {
      auths: {
        'quay.io': { auth: b64('host:0') },
        'quay.io/team': { auth: b64('team:1') },
        'quay.io/team/app': { auth: b64('app:2') },
      },
    });
    expect(await find('quay.io', { repository: 'team/app' })).toEqual({ username: 'app', password: '2' });
    expect(await find('quay.io', { repository: 'team/other' })).toEqual({ username: 'team', password: '1' });
    expect(await find('quay.io', { repository: 'someone/app' })).toEqual({ username: 'host', password: '0' });
    expect(await find('quay.io')).toEqual({ username: 'host', password: '0' });
    // A namespace key never matches a longer name that merely starts with it.
    expect(await find('quay.io', { repository: 'teamster/app' })).toEqual({ username: 'host', password: '0' });
  });

  it('matches legacy URL keys, but prefers the exact host', async () => {
    await writeJson(runtimeAuth(), {
      auths: {
        'https://a.example.com': { auth: b64('https:1') },
        'http://b.example.com/v1/': { auth: b64('http:2') },
        'https://c.example.com': { auth: b64('url:3') },
        'c.example.com': { auth: b64('exact:4') },
      },
    });
    expect(await find('a.example.com')).toEqual({ username: 'https', password: '1' });
    expect(await find('b.example.com')).toEqual({ username: 'http', password: '2' });
    expect(await find('c.example.com')).toEqual({ username: 'exact', password: '4' });
    expect(await find('example.com')).toBeUndefined();
  });

  it.each(['https://index.docker.io/v1/', 'registry-1.docker.io', 'index.docker.io', 'docker.io'])(
    'matches Docker Hub filed under %s',
    async (key) => {
      await writeJson(dockerConfig(), { auths: { [key]: { auth: b64('hub:1') } } });
      expect(await find('docker.io', { repository: 'library/busybox' })).toEqual({ username: 'hub', password: '1' });
    },
  );

  it('keeps path-scoped Docker Hub keys on docker.io', async () => {
    await writeJson(runtimeAuth(), {
      auths: { 'docker.io': { auth: b64('hub:1') }, 'docker.io/acme': { auth: b64('acme:2') } },
    });
    expect(await find('docker.io', { repository: 'acme/app' })).toEqual({ username: 'acme', password: '2' });
    expect(await find('docker.io', { repository: 'library/busybox' })).toEqual({ username: 'hub', password: '1' });
  });
});

describe('credential helpers', () => {
  it('runs credHelpers[host] with the server URL on stdin', async () => {
    await writeJson(dockerConfig(), { credHelpers: { 'registry.example.com': 'test' } });
    expect(await find('registry.example.com')).toEqual({ username: 'helper-user', password: 'helper-pass' });
    expect(await helperCalls()).toEqual(['get registry.example.com']);
  });

  it('reads <token> as an identity token', async () => {
    await writeJson(dockerConfig(), { credHelpers: { 'token.example.com': 'test' } });
    expect(await find('token.example.com')).toEqual({ identityToken: 'refresh-123' });
  });

  it('takes "credentials not found" as none, without falling back to the same file', async () => {
    await writeJson(runtimeAuth(), {
      credHelpers: { 'unknown.example.com': 'test' },
      auths: { 'unknown.example.com': { auth: b64('shadowed:1') } },
    });
    await writeJson(dockerConfig(), { auths: { 'unknown.example.com': { auth: b64('docker:2') } } });
    expect(await find('unknown.example.com')).toEqual({ username: 'docker', password: '2' });
    expect(await helperCalls()).toEqual(['get unknown.example.com']);
  });

  it('lets a helper win over auths in the same file', async () => {
    await writeJson(dockerConfig(), {
      credHelpers: { 'registry.example.com': 'test' },
      auths: { 'registry.example.com': { auth: b64('inline:1') } },
    });
    expect(await find('registry.example.com')).toEqual({ username: 'helper-user', password: 'helper-pass' });
  });

  it('asks credsStore for Docker Hub under its v1 URL, after empty auths markers', async () => {
    await writeJson(dockerConfig(), { credsStore: 'test', auths: { 'https://index.docker.io/v1/': {} } });
    expect(await find('docker.io', { repository: 'library/busybox' })).toEqual({ username: 'hub-user', password: 'hub-pass' });
    expect(await helperCalls()).toEqual(['get https://index.docker.io/v1/']);
  });

  it('asks a Podman-style docker.io helper entry under docker.io', async () => {
    await writeJson(runtimeAuth(), { credHelpers: { 'docker.io': 'test' } });
    expect(await find('docker.io')).toEqual({ username: 'podman-hub-user', password: 'podman-hub-pass' });
  });

  it('uses real auths entries before credsStore, and credsStore for the rest', async () => {
    await writeJson(dockerConfig(), { credsStore: 'test', auths: { 'a.example.com': { auth: b64('inline:1') } } });
    expect(await find('a.example.com')).toEqual({ username: 'inline', password: '1' });
    expect(await find('registry.example.com')).toEqual({ username: 'helper-user', password: 'helper-pass' });
    expect(await find('nothing.example.com')).toBeUndefined();
    expect(await helperCalls()).toEqual(['get registry.example.com', 'get nothing.example.com']);
  });

  it('reports a failing helper with its complaint', async () => {
    await writeJson(dockerConfig(), { credHelpers: { 'broken.example.com': 'test' } });
    const err = await rejection(find('broken.example.com'));
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.subject).toBe(dockerConfig());
    expect(err.message).toContain('docker-credential-test failed (exit code 3): keychain locked');
  });

  it('stops a helper that hangs (a keyring prompt) when the signal fires, without signal handlers in the meantime', async () => {
    await writeJson(dockerConfig(), { credHelpers: { 'hang.example.com': 'test' } });
    const handlers = () => ['SIGINT', 'SIGTERM', 'SIGHUP'].map((name) => process.listenerCount(name));
    const before = handlers();
    const started = Date.now();
    const looking = rejection(find('hang.example.com', { signal: AbortSignal.timeout(500) }));
    await new Promise((resolve) => setTimeout(resolve, 250));
    expect(handlers()).toEqual(before);
    const err = await looking;
    expect(err.code).toBe('ABORTED');
    expect(err.message).toContain('docker-credential-test stopped');
    expect(Date.now() - started).toBeLessThan(5_000);
  });

  it('never repeats what a helper printed when it is not credentials', async () => {
    await writeJson(dockerConfig(), { credHelpers: { 'garbage.example.com': 'test' } });
    const err = await rejection(find('garbage.example.com'));
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.message).not.toContain('SECRET-GARBAGE');
  });

  it('says when a helper is not installed', async () => {
    await writeJson(dockerConfig(), { credsStore: 'absent' });
    const err = await rejection(find('registry.example.com'));
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.message).toContain('docker-credential-absent is not installed');
  });

  it('refuses helper names that would be paths', async () => {
    await writeJson(dockerConfig(), { credHelpers: { 'registry.example.com': '../../bin/sh' } });
    expect((await rejection(find('registry.example.com'))).code).toBe('INVALID_METADATA');
  });
});

describe('broken files', () => {
  it('reports broken JSON by file, without quoting it', async () => {
    await mkdir(dirname(runtimeAuth()), { recursive: true });
    await writeFile(runtimeAuth(), `{"auths": {"a.example.com": {"auth": "${b64('alice:hunter2')}"} hunter2`);
    const err = await rejection(find('a.example.com'));
    expect(err.code).toBe('INVALID_METADATA');
    expect(err.subject).toBe(runtimeAuth());
    expect(err.message).not.toContain('hunter2');
    expect(err.message).not.toContain(b64('alice:hunter2'));
    expect(err.cause).toBeUndefined();
  });

  it('reports a JSON file of the wrong shape, without quoting values', async () => {
    await writeJson(dockerConfig(), { auths: { 'a.example.com': { auth: 12345678 } } });
    const err = await rejection(find('a.example.com'));
    expect(err.code).toBe('INVALID_METADATA');
    expect(err.message).toContain('auths.a.example.com.auth');
    expect(err.message).not.toContain('12345678');
  });

  it('fails on a broken file even when a better file has no entry', async () => {
    await writeJson(runtimeAuth(), { auths: {} });
    await mkdir(dirname(dockerConfig()), { recursive: true });
    await writeFile(dockerConfig(), '[');
    expect((await rejection(find('a.example.com'))).subject).toBe(dockerConfig());
  });
});
