import { randomUUID } from 'node:crypto';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import {
  authFilePaths,
  containersAuthFile,
  removeCredential,
  storeCredential,
  type AuthFileOptions,
} from '../../src/registry/auth-file.js';
import { HOLDER } from '../../src/fs/owned-names.js';
import { findCredential } from '../../src/registry/credentials.js';
import { leftByExited } from '../helpers/owned.js';
import { rejection } from '../helpers/rejection.js';

let root: string;
let home: string;
let runtimeDir: string;
let options: AuthFileOptions;

const authFile = () => join(runtimeDir, 'containers/auth.json');

async function readJson(file: string): Promise<unknown> {
  return JSON.parse(await readFile(file, 'utf8'));
}

async function mode(file: string): Promise<number> {
  return (await stat(file)).mode & 0o777;
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'ckpt-auth-file-'));
  home = join(root, 'home');
  runtimeDir = join(root, 'run');
  await mkdir(runtimeDir);
  options = { env: { XDG_RUNTIME_DIR: runtimeDir }, home };
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('where the auth files are', () => {
  it('writes to --authfile, else $REGISTRY_AUTH_FILE, else the runtime directory, else /run/containers/UID', () => {
    expect(containersAuthFile({ authFile: '/a.json', env: { REGISTRY_AUTH_FILE: '/b.json', XDG_RUNTIME_DIR: '/r' } })).toBe('/a.json');
    expect(containersAuthFile({ env: { REGISTRY_AUTH_FILE: '/b.json', XDG_RUNTIME_DIR: '/r' } })).toBe('/b.json');
    expect(containersAuthFile({ env: { XDG_RUNTIME_DIR: '/r' } })).toBe('/r/containers/auth.json');
    expect(containersAuthFile({ env: {} })).toBe(`/run/containers/${process.getuid?.() ?? 0}/auth.json`);
  });

  it('reads the containers files, then Docker’s; an explicit file alone', () => {
    expect(authFilePaths({ env: { XDG_RUNTIME_DIR: '/r' }, home: '/h' })).toEqual([
      '/r/containers/auth.json',
      '/h/.config/containers/auth.json',
      '/h/.docker/config.json',
    ]);
    expect(authFilePaths({ env: { XDG_RUNTIME_DIR: '/r', XDG_CONFIG_HOME: '/x', DOCKER_CONFIG: '/d' }, home: '/h' })).toEqual([
      '/r/containers/auth.json',
      '/x/containers/auth.json',
      '/d/config.json',
    ]);
    expect(authFilePaths({ env: { REGISTRY_AUTH_FILE: '/b.json' }, home: '/h' })).toEqual(['/b.json']);
    expect(authFilePaths({ authFile: '/a.json', env: {}, home: '/h' })).toEqual(['/a.json']);
  });
});

describe('storeCredential and removeCredential', () => {
  it('round-trips store, find and remove, keeping everything else, mode 0600', async () => {
    await mkdir(join(runtimeDir, 'containers'));
    const others = {
      auths: { 'other.example.com': { auth: Buffer.from('bob:pw').toString('base64'), email: 'kept@example.com' } },
      credHelpers: { 'helper.example.com': 'secretservice' },
      somethingNew: { kept: true },
    };
    await writeFile(authFile(), JSON.stringify(others), { mode: 0o644 });

    expect(await storeCredential('registry.example.com:5000', { username: 'alice', password: 's3:cret' }, options)).toBe(authFile());
    expect(await mode(authFile())).toBe(0o600);
    expect(await readJson(authFile())).toEqual({
      ...others,
      auths: { ...others.auths, 'registry.example.com:5000': { auth: Buffer.from('alice:s3:cret').toString('base64') } },
    });
    expect(await findCredential('registry.example.com:5000', options)).toEqual({ username: 'alice', password: 's3:cret' });

    expect(await removeCredential('registry.example.com:5000', options)).toBe(true);
    expect(await readJson(authFile())).toEqual(others);
    expect(await mode(authFile())).toBe(0o600);
    expect(await findCredential('registry.example.com:5000', options)).toBeUndefined();
    expect(await removeCredential('registry.example.com:5000', options)).toBe(false);
    // Nothing left behind by the atomic writes.
    expect(await readdir(join(runtimeDir, 'containers'))).toEqual(['auth.json']);
  });

  it('a logout removes the copy of the file a killed login left, which holds every credential; a running one\'s stays', async () => {
    await storeCredential('registry.example.com', { username: 'alice', password: 'pw' }, options);
    const dir = join(runtimeDir, 'containers');
    const killed = join(dir, `.auth.json.${await leftByExited()}`);
    const running = join(dir, `.auth.json.${HOLDER}.${randomUUID()}`);
    for (const copy of [killed, running]) await writeFile(copy, await readFile(authFile()));
    expect(await removeCredential('registry.example.com', options)).toBe(true);
    expect((await readdir(dir)).sort()).toEqual(['auth.json', basename(running)].sort());
    // Killed before its entry reached the file: the logout finds nothing to remove, and still removes the copy.
    const again = join(dir, `.auth.json.${await leftByExited()}`);
    await writeFile(again, JSON.stringify({ auths: { 'registry.example.com': { auth: 'dTpw' } } }));
    expect(await removeCredential('registry.example.com', options)).toBe(false);
    expect(existsSync(again)).toBe(false);
  });

  it('replaces an earlier login for the same key', async () => {
    await storeCredential('a.example.com', { username: 'old', password: '1' }, options);
    await storeCredential('a.example.com', { username: 'new', password: '2' }, options);
    expect(await findCredential('a.example.com', options)).toEqual({ username: 'new', password: '2' });
  });

  it('creates the containers directory, owner-only', async () => {
    await storeCredential('a.example.com', { username: 'u', password: 'p' }, options);
    expect(await mode(join(runtimeDir, 'containers'))).toBe(0o700);
    expect(await mode(authFile())).toBe(0o600);
  });

  it('stores namespace-scoped logins that apply to that namespace only', async () => {
    await storeCredential('quay.io/team', { username: 'team', password: '1' }, options);
    expect(await findCredential('quay.io', { ...options, repository: 'team/app' })).toEqual({ username: 'team', password: '1' });
    expect(await findCredential('quay.io', { ...options, repository: 'other/app' })).toBeUndefined();
  });

  it('writes --authfile and $REGISTRY_AUTH_FILE when given', async () => {
    const explicit = join(root, 'deep/dir/explicit.json');
    await storeCredential('a.example.com', { username: 'u', password: 'p' }, { ...options, authFile: explicit });
    expect(await readJson(explicit)).toHaveProperty(['auths', 'a.example.com']);
    const named = join(root, 'named.json');
    await storeCredential('b.example.com', { username: 'u', password: 'p' }, { env: { REGISTRY_AUTH_FILE: named } });
    expect(await readJson(named)).toHaveProperty(['auths', 'b.example.com']);
    await expect(stat(authFile())).rejects.toThrow();
  });

  it('refuses to create a missing $XDG_RUNTIME_DIR', async () => {
    const err = await rejection(
      storeCredential('a.example.com', { username: 'u', password: 'p' }, { env: { XDG_RUNTIME_DIR: join(root, 'typo') } }),
    );
    expect(err.code).toBe('WRITE_FAILED');
    expect(err.subject).toBe(join(root, 'typo'));
  });

  it('leaves a broken file alone', async () => {
    await mkdir(join(runtimeDir, 'containers'));
    await writeFile(authFile(), '{broken');
    const err = await rejection(storeCredential('a.example.com', { username: 'u', password: 'p' }, options));
    expect(err.code).toBe('INVALID_METADATA');
    expect(await readFile(authFile(), 'utf8')).toBe('{broken');
  });

  it('refuses keys a credential helper owns', async () => {
    await mkdir(join(runtimeDir, 'containers'));
    await writeFile(authFile(), JSON.stringify({ credHelpers: { 'a.example.com': 'pass' } }));
    expect((await rejection(storeCredential('a.example.com', { username: 'u', password: 'p' }, options))).code).toBe('UNSUPPORTED');
    expect((await rejection(removeCredential('a.example.com', options))).code).toBe('UNSUPPORTED');
  });

  it.each(['https://a.example.com', 'a.example.com/app:latest', 'a.example.com/app@sha256:00', '', 'a b'])(
    'refuses the key %j',
    async (key) => {
      expect((await rejection(storeCredential(key, { username: 'u', password: 'p' }, options))).code).toBe('INVALID_REFERENCE');
    },
  );

  it('refuses user names with a colon and empty passwords, naming no secret', async () => {
    const colon = await rejection(storeCredential('a.example.com', { username: 'a:b', password: 'hunter2' }, options));
    expect(colon.code).toBe('USAGE');
    expect(colon.message).not.toContain('hunter2');
    expect((await rejection(storeCredential('a.example.com', { username: 'a', password: '' }, options))).code).toBe('USAGE');
  });

  it('removes nothing, and creates nothing, when there is no file', async () => {
    expect(await removeCredential('a.example.com', options)).toBe(false);
    await expect(stat(authFile())).rejects.toThrow();
  });
});
