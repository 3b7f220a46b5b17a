import { Readable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RegistryClient } from '../../src/registry/client.js';
import type { Credential } from '../../src/registry/options.js';
import { RegistryRepository } from '../../src/registry/repository.js';
import { blob, collect, trickle } from '../helpers/blobs.js';
import { DEFAULT_USERS, startRegistry, type RegistryServer } from '../helpers/registry.js';
import { rejection as failure } from '../helpers/rejection.js';

const PASSWORD = DEFAULT_USERS.alice;

function credentials(cred: Credential | undefined): (registry: string) => Promise<Credential | undefined> {
  return () => Promise.resolve(cred);
}

/** Everything an error shows: message, and the messages of its causes. */
function everything(err: Error): string {
  let text = `${err.message}\n${err.stack ?? ''}`;
  for (let e: unknown = err.cause; e instanceof Error; e = e.cause) text += `\n${e.message}`;
  return text;
}

describe('Basic auth (htpasswd)', () => {
  let registry: RegistryServer;
  beforeAll(async () => {
    registry = await startRegistry({ auth: 'htpasswd' });
  });
  afterAll(() => registry.stop());

  const open = (cred: Credential | undefined): RegistryRepository =>
    RegistryRepository.open({ registry: registry.host, repository: 'basic/repo' }, { plainHttp: true, credentials: credentials(cred) });

  it('pushes and pulls with the right password', async () => {
    const r = open({ username: 'alice', password: PASSWORD });
    const { bytes, desc } = blob(70_000);
    expect(await r.ingest(desc.mediaType, Readable.from([bytes]))).toEqual(desc);
    expect((await collect(await r.fetch(desc))).equals(bytes)).toBe(true);
    await r.close();
  });

  it('fails with UNAUTHORIZED and no secret on a wrong password', async () => {
    const secret = 'wrong-password-s3cr3t';
    const r = open({ username: 'alice', password: secret });
    const err = await failure(r.exists(blob(10).desc));
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.message).toMatch(/rejected the credentials/);
    expect(everything(err)).not.toContain(secret);
    expect(everything(err)).not.toContain(Buffer.from(`alice:${secret}`).toString('base64'));
    await r.close();
  });

  it("one caller's abort does not fail another that waits for the same credential lookup", async () => {
    let lookups = 0;
    const slow = async (_registry: string, signal: AbortSignal): Promise<Credential> => {
      lookups++;
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(resolve, 400);
        signal.addEventListener('abort', () => (clearTimeout(timer), reject(new Error('lookup stopped'))), { once: true });
      });
      return { username: 'alice', password: PASSWORD };
    };
    const r = RegistryRepository.open({ registry: registry.host, repository: 'basic/repo' }, { plainHttp: true, credentials: slow });
    const first = new AbortController();
    const a = r.exists(blob(10).desc, { signal: first.signal });
    await new Promise((resolve) => setTimeout(resolve, 100));
    const b = r.exists(blob(11).desc);
    setTimeout(() => first.abort(), 50);
    expect((await failure(a)).code).toBe('ABORTED');
    expect(await b).toBe(false);
    expect(lookups).toBe(1);
    await r.close();
  });

  it('fails with UNAUTHORIZED when no credentials are stored', async () => {
    const r = open(undefined);
    const err = await failure(r.resolve('latest'));
    expect(err.code).toBe('UNAUTHORIZED');
    expect(err.message).toMatch(/no credentials/);
    await r.close();
  });
});

describe('token auth', () => {
  let registry: RegistryServer;
  beforeAll(async () => {
    registry = await startRegistry({
      auth: 'token',
      token: {
        refreshTokens: { 'refresh-s3cr3t': 'alice' },
        grant: (user, repo, actions) => (repo.startsWith('forbidden/') ? actions.filter((a) => a === 'pull') : user ? actions : []),
      },
    });
  });
  afterAll(() => registry.stop());

  const open = (repository: string, cred: Credential | undefined, chunkSize?: number): RegistryRepository =>
    RegistryRepository.open({ registry: registry.host, repository }, { plainHttp: true, credentials: credentials(cred), chunkSize });

  it('gets a token with Basic credentials, caches it per scope and pushes', async () => {
    const r = open('token/app', { username: 'alice', password: PASSWORD });
    const before = registry.tokenServer?.issued.length ?? 0;
    const blobs = [blob(1_000), blob(2_000), blob(3_000)];
    for (const b of blobs) await r.push(b.desc, Readable.from([b.bytes]));
    for (const b of blobs) expect((await collect(await r.fetch(b.desc))).equals(b.bytes)).toBe(true);
    const issued = (registry.tokenServer?.issued ?? []).slice(before);
    // One token for pull (the HEADs and GETs) and one for pull,push: not one per request.
    expect(issued.length).toBeLessThanOrEqual(3);
    expect(issued.every((t) => t.user === 'alice')).toBe(true);
    await r.close();
  });

  it('exchanges an identity token with a refresh_token grant', async () => {
    const r = open('token/identity', { identityToken: 'refresh-s3cr3t' });
    const { bytes, desc } = blob(500);
    await r.push(desc, Readable.from([bytes]));
    expect(registry.tokenServer?.issued.at(-1)).toMatchObject({ method: 'POST', user: 'alice' });
    await r.close();
  });

  it('mounts across repositories with a token for both scopes', async () => {
    const cred = { username: 'alice', password: PASSWORD };
    const from = open('token/mount-source', cred);
    const to = open('token/mount-dest', cred);
    const { bytes, desc } = blob(700);
    await from.push(desc, Readable.from([bytes]));
    expect(await to.mount(desc, 'token/mount-source')).toBe(true);
    expect(registry.tokenServer?.issued.at(-1)?.scopes.sort()).toEqual(['repository:token/mount-dest:pull,push', 'repository:token/mount-source:pull']);
    expect(await to.exists(desc)).toBe(true);
    await from.close();
    await to.close();
  });

  it('fails with UNAUTHORIZED when the token server refuses the password', async () => {
    const secret = 'not-the-password';
    const r = open('token/app', { username: 'alice', password: secret });
    const err = await failure(r.resolve('latest'));
    expect(err.code).toBe('UNAUTHORIZED');
    expect(everything(err)).not.toContain(secret);
    await r.close();
  });

  it('fails with DENIED when the token does not grant the scope', async () => {
    const r = open('forbidden/app', { username: 'alice', password: PASSWORD });
    const { bytes, desc } = blob(500);
    const err = await failure(r.push(desc, Readable.from([bytes])));
    expect(err.code).toBe('DENIED');
    expect(err.message).toMatch(/forbidden\/app/);
    await r.close();
  });

  it('renews a 2-second token during a long chunked upload', async () => {
    registry.tokenServer?.setTtl(2);
    try {
      const r = open('token/slow', { username: 'alice', password: PASSWORD }, 64 * 1024);
      const before = registry.tokenServer?.issued.length ?? 0;
      const { bytes, desc } = blob(64 * 1024 * 10);
      // About 5 s: 40 pieces of 16 KiB, 120 ms apart.
      expect(await r.ingest(desc.mediaType, trickle(bytes, 16 * 1024, 120))).toEqual(desc);
      expect((registry.tokenServer?.issued.length ?? 0) - before).toBeGreaterThanOrEqual(3);
      await r.close();
    } finally {
      registry.tokenServer?.setTtl(300);
    }
  });

  it('fetches a new token on a 401 in the middle of an upload when expires_in lied', async () => {
    registry.tokenServer?.setTtl(2, 300);
    try {
      const r = open('token/lied', { username: 'alice', password: PASSWORD }, 64 * 1024);
      const before = registry.tokenServer?.issued.length ?? 0;
      const { bytes, desc } = blob(64 * 1024 * 6);
      expect(await r.ingest(desc.mediaType, trickle(bytes, 16 * 1024, 150))).toEqual(desc);
      expect((registry.tokenServer?.issued.length ?? 0) - before).toBeGreaterThanOrEqual(2);
      await r.close();
    } finally {
      registry.tokenServer?.setTtl(300);
    }
  });
});

describe('TLS with a test CA', () => {
  let registry: RegistryServer;
  beforeAll(async () => {
    registry = await startRegistry({ tls: true });
  });
  afterAll(() => registry.stop());

  it('pushes when the CA is given', async () => {
    const client = new RegistryClient(registry.host, { ca: registry.caCert ? [registry.caCert] : [] });
    const r = new RegistryRepository(client, 'tls/app');
    const { bytes, desc } = blob(1_000);
    await r.push(desc, Readable.from([bytes]));
    expect((await collect(await r.fetch(desc))).equals(bytes)).toBe(true);
    await client.close();
  });

  it('fails with NETWORK, naming the certificate problem, without the CA', async () => {
    const r = RegistryRepository.open({ registry: registry.host, repository: 'tls/app' }, { retry: { attempts: 1 } });
    const err = await failure(r.resolve('latest'));
    expect(err.code).toBe('NETWORK');
    expect(err.message).toMatch(/certificate/i);
    await r.close();
  });

  it('connects without the CA only when told not to verify', async () => {
    const r = RegistryRepository.open({ registry: registry.host, repository: 'tls/app' }, { tlsVerify: false });
    await expect(r.resolve('latest')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await r.close();
  });

  it('takes scheme and CA from a hostSettings callback', async () => {
    const r = RegistryRepository.open(
      { registry: registry.host, repository: 'tls/app' },
      { hostSettings: () => Promise.resolve({ scheme: 'https', ca: registry.caCert ? [registry.caCert] : [] }) },
    );
    await expect(r.resolve('latest')).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await r.close();
  });
});
