import { copyFile, mkdir, readdir, readFile, stat, truncate, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeIssuedChain } from '../helpers/certs.js';
import { DEFAULT_USERS, type RegistryServer, startRegistry } from '../helpers/registry.js';
import { interruptAfter } from '../helpers/interrupt.js';
import { onTerminal } from '../helpers/terminal.js';
import { ckpt, fixture, tempDir } from '../helpers/tree.js';

const [USER, PASSWORD] = Object.entries(DEFAULT_USERS)[0] as [string, string];

function skopeo(...args: string[]) {
  return execa('skopeo', args, { reject: false });
}

describe('push, copy and inspect against a real registry', () => {
  let registry: RegistryServer;
  let pushed: { digest: string; layers: Array<{ digest: string; size: number }>; built: boolean } & Record<string, unknown>;
  beforeAll(async () => {
    registry = await startRegistry();
    const run = await ckpt(['push', fixture('podman-counter.tar'), `${registry.host}/ckpt/counter:v1`, '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    pushed = JSON.parse(run.stdout) as typeof pushed;
  });
  afterAll(() => registry.stop());

  it('skopeo reads what ckpt push wrote, with the same digest', async () => {
    expect(pushed.built).toBe(true);
    const { stdout } = await skopeo('inspect', '--tls-verify=false', '--raw', `docker://${registry.host}/ckpt/counter:v1`);
    const { stdout: digest } = await execa('sh', ['-c', `skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://${registry.host}/ckpt/counter:v1`]);
    expect(digest.trim()).toBe(pushed.digest);
    expect(JSON.parse(stdout)).toMatchObject({ artifactType: 'application/vnd.ckpt.checkpoint.v1' });
    const layout = join(await tempDir(), 'layout');
    const copied = await skopeo('copy', '--src-tls-verify=false', `docker://${registry.host}/ckpt/counter:v1`, `oci:${layout}:v1`);
    expect(copied.exitCode, copied.stderr).toBe(0);
    const index = JSON.parse(await readFile(join(layout, 'index.json'), 'utf8')) as { manifests: Array<{ digest: string }> };
    expect(index.manifests[0]?.digest).toBe(pushed.digest);
  });

  it('build --json and push --json print the same record, push saying whether it built', async () => {
    const layout = join(await tempDir(), 'layout');
    const built = JSON.parse((await ckpt(['build', fixture('podman-counter.tar'), `oci:${layout}:v1`, '--json'])).stdout) as Record<string, unknown>;
    const copied = JSON.parse((await ckpt(['push', `oci:${layout}:v1`, `${registry.host}/ckpt/counter:copied`, '--json'])).stdout) as Record<string, unknown>;
    const record = (json: Record<string, unknown>) => ({ ...json, reference: undefined, built: undefined });
    expect(record(pushed)).toEqual(record(built));
    expect(record(copied)).toEqual(record(built));
    expect(pushed.built).toBe(true);
    expect(copied.built).toBe(false);
    expect(built).toMatchObject({ manifest: pushed.digest, layers: [{ role: 'metadata' }, { role: 'pages' }, { role: 'rootfs-diff' }] });
  });

  it('pushing the same checkpoint again sends no layer', async () => {
    const again = await ckpt(['push', fixture('podman-counter.tar'), `${registry.host}/ckpt/counter:v1`, '--progress', '--json']);
    expect(again.exitCode, again.stderr).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ digest: pushed.digest });
    for (const layer of pushed.layers) expect(again.stderr).not.toContain(`done ${layer.digest}`);
    const image = await ckpt(['push', `${registry.host}/ckpt/counter:v1`, `${registry.host}/ckpt/counter:again`, '--progress']);
    expect(image.exitCode, image.stderr).toBe(0);
    expect(image.stdout).toContain(pushed.digest);
    for (const layer of pushed.layers) expect(image.stderr).toContain(`skipped ${layer.digest}`);
  });

  it('copy to another repository mounts the blobs and keeps the digest', async () => {
    const run = await ckpt(['copy', `${registry.host}/ckpt/counter:v1`, `${registry.host}/promoted/counter:prod`, '--progress']);
    expect(run.exitCode, run.stderr).toBe(0);
    for (const layer of pushed.layers) expect(run.stderr).toContain(`mounted ${layer.digest}`);
    expect(run.stdout).toContain(pushed.digest);
  });

  it('copy to a layout and back to the registry keeps the digest', async () => {
    const layout = join(await tempDir(), 'layout');
    expect((await ckpt(['copy', `${registry.host}/ckpt/counter:v1`, `oci:${layout}:v1`])).exitCode).toBe(0);
    const back = await ckpt(['copy', `oci:${layout}:v1`, `${registry.host}/roundtrip/counter:v1`, '-q']);
    expect(back.stdout.trim()).toBe(pushed.digest);
  });

  it('inspect reads the manifest and the metadata layer only', async () => {
    const run = await ckpt(['inspect', `${registry.host}/ckpt/counter:v1`, '--verbose', '--json']);
    expect(run.exitCode, run.stderr).toBe(0);
    const result = JSON.parse(run.stdout) as { fetchedBytes: number; metadata: { container: { name: string }; memory: { bytes: number } } };
    expect(result.metadata.container.name).toBe('counter');
    expect(result.metadata.memory.bytes).toBe(1052672);
    const pages = pushed.layers[1]?.size ?? 0;
    expect(result.fetchedBytes).toBeLessThan(pages);
    // The manifest counts too, read by its tag: more than the metadata layer alone.
    expect(result.fetchedBytes).toBeGreaterThan(pushed.layers[0]?.size ?? 0);
    expect(run.stderr).toMatch(/^Fetched .* of .* in layers$/m);
  });

  it('podman pull accepts the image', async () => {
    const store = await tempDir('ckpt-podman-');
    const podman = (...args: string[]) =>
      execa('podman', ['--root', join(store, 'root'), '--runroot', join(store, 'run'), '--storage-driver', 'vfs', ...args], { reject: false });
    const pulled = await podman('pull', '--tls-verify=false', `${registry.host}/ckpt/counter:v1`);
    expect(pulled.exitCode, pulled.stderr).toBe(0);
    const inspected = await podman('image', 'inspect', `${registry.host}/ckpt/counter:v1`);
    expect(JSON.parse(inspected.stdout)[0].Annotations).toMatchObject({ 'io.podman.annotations.checkpoint.name': 'counter' });
    // Its storage unpacks each layer apart: checkpoint/ keeps the mode and time it has in the checkpoint.
    const mounted = await podman('image', 'mount', `${registry.host}/ckpt/counter:v1`);
    expect(mounted.exitCode, mounted.stderr).toBe(0);
    const dir = await stat(join(mounted.stdout.trim(), 'checkpoint'));
    expect((dir.mode & 0o7777).toString(8)).toBe('600');
    expect(dir.mtime.toISOString()).toMatch(/^2026-11-27T13:34:/);
    await podman('image', 'unmount', `${registry.host}/ckpt/counter:v1`);
  });

  it('an --authfile that does not exist is an error even where the registry asks for no login', async () => {
    const missing = join(await tempDir(), 'auth.json');
    for (const args of [['inspect', `${registry.host}/ckpt/counter:v1`], ['pull', `${registry.host}/ckpt/counter:v1`, join(await tempDir(), 'out')]]) {
      const run = await ckpt([...args, '--authfile', missing]);
      expect(run.exitCode, run.stderr).toBe(4);
      expect(run.stderr).toBe(`ckpt: ${missing}: no such auth file (named by --authfile, the option authFile, or $REGISTRY_AUTH_FILE)`);
    }
  });

  it('an unknown tag, an unknown repository and a bad reference fail clearly', async () => {
    const tag = await ckpt(['inspect', `${registry.host}/ckpt/counter:nope`]);
    expect(tag.exitCode).toBe(4);
    expect(tag.stderr).toMatch(/^ckpt: .*counter.*nope.*/);
    const repo = await ckpt(['copy', `${registry.host}/missing/repo:v1`, `oci:${await tempDir()}/x:v1`]);
    expect(repo.exitCode).toBe(4);
    const bad = await ckpt(['push', fixture('crio-counter.tar'), `${registry.host}/Bad_Repo:v1`]);
    expect(bad.exitCode).toBe(2);
  });

  it('a push that fails moves no tag', async () => {
    const broken = join(await tempDir(), 'broken.tar');
    await copyFile(fixture('crio-counter.tar'), broken);
    await truncate(broken, 150_000);
    const run = await ckpt(['push', broken, `${registry.host}/ckpt/counter:v1`]);
    expect(run.exitCode).toBe(3);
    const { stdout } = await execa('sh', ['-c', `skopeo inspect --tls-verify=false --format '{{.Digest}}' docker://${registry.host}/ckpt/counter:v1`]);
    expect(stdout.trim()).toBe(pushed.digest);
  });
});

describe('authentication and TLS', () => {
  let basic: RegistryServer;
  let tls: RegistryServer;
  let token: RegistryServer;
  beforeAll(async () => {
    [basic, tls, token] = await Promise.all([
      startRegistry({ auth: 'htpasswd' }),
      startRegistry({ tls: true }),
      startRegistry({ auth: 'token', token: { ttlSeconds: 30 } }),
    ]);
  });
  afterAll(() => Promise.all([basic.stop(), tls.stop(), token.stop()]));

  it('a wrong password is refused with exit 5 and the password never appears', async () => {
    const run = await ckpt(['push', fixture('crio-counter.tar'), `${basic.host}/ckpt/crio:v1`, '--creds', `${USER}:wrong-secret-123`]);
    expect(run.exitCode).toBe(5);
    expect(`${run.stdout}${run.stderr}`).not.toContain('wrong-secret-123');
    expect(run.stderr.split('\n').filter(Boolean)).toHaveLength(1);
  });

  it('--creds, then login / logout with the auth file', async () => {
    const ok = await ckpt(['push', fixture('crio-counter.tar'), `${basic.host}/ckpt/crio:v1`, '--creds', `${USER}:${PASSWORD}`, '-q']);
    expect(ok.exitCode, ok.stderr).toBe(0);
    const authFile = join(await tempDir(), 'auth.json');
    const env = { REGISTRY_AUTH_FILE: authFile };
    const refused = await ckpt(['login', basic.host, '--username', USER, '--password-stdin'], { input: 'nope', env });
    expect(refused.exitCode).toBe(5);
    const login = await ckpt(['login', basic.host, '--username', USER, '--password-stdin'], { input: `${PASSWORD}\n`, env });
    expect(login.exitCode, login.stderr).toBe(0);
    expect(JSON.parse(await readFile(authFile, 'utf8'))).toHaveProperty(['auths', basic.host]);
    const inspected = await ckpt(['inspect', `${basic.host}/ckpt/crio:v1`], { env });
    expect(inspected.exitCode, inspected.stderr).toBe(0);
    expect(inspected.stdout).toMatch(/^Engine\s+CRI-O$/m);
    expect((await ckpt(['logout', basic.host], { env })).exitCode).toBe(0);
    expect((await ckpt(['inspect', `${basic.host}/ckpt/crio:v1`], { env })).exitCode).toBe(5);
  });

  it('login on a terminal asks for the user and, without echo, the password, as podman login does; --creds USER asks too', async () => {
    const authFile = join(await tempDir(), 'auth.json');
    const env = { REGISTRY_AUTH_FILE: authFile };
    const login = await onTerminal(['login', basic.host], [[/Username: $/, `${USER}\r`], [/Password: $/, `${PASSWORD}\r`]], env);
    expect(login.code, login.output).toBe(0);
    expect(login.output).toContain(`Username: ${USER}`);
    expect(login.output).not.toContain(PASSWORD);
    expect(login.output).toContain('Login succeeded');
    expect(JSON.parse(await readFile(authFile, 'utf8'))).toHaveProperty(['auths', basic.host]);
    const push = await onTerminal(['push', fixture('crio-counter.tar'), `${basic.host}/ckpt/asked:v1`, '--creds', USER, '-q'], [[/Password: $/, `${PASSWORD}\r`]]);
    expect(push.code, push.output).toBe(0);
    expect(push.output).not.toContain(PASSWORD);
    // Ctrl-C at the hidden prompt ends the command as a SIGINT would.
    const stopped = await onTerminal(['login', basic.host, '-u', USER], [[/Password: $/, 'abc\u0003']], env);
    expect(stopped.code).toBe(130);
    expect(stopped.output).toContain('ckpt: password prompt: interrupted (SIGINT)');
    // Without a terminal, nothing is asked.
    const piped = await ckpt(['login', basic.host], { env });
    expect(piped.exitCode).toBe(2);
    expect(piped.stderr).toMatch(/login needs --username with --password-stdin, or --creds/);
  });

  it('login and logout of a namespace touch its own entry, as podman login does, not the host entry', async () => {
    const authFile = join(await tempDir(), 'auth.json');
    const env = { REGISTRY_AUTH_FILE: authFile };
    const entries = async () => Object.keys((JSON.parse(await readFile(authFile, 'utf8')) as { auths: object }).auths).sort();
    for (const key of [basic.host, `${basic.host}/team`]) {
      const login = await ckpt(['login', key, '--username', USER, '--password-stdin'], { input: `${PASSWORD}\n`, env });
      expect(login.exitCode, login.stderr).toBe(0);
    }
    expect(await entries()).toEqual([basic.host, `${basic.host}/team`]);
    const logout = await ckpt(['logout', `${basic.host}/team`], { env });
    expect(logout.stderr.trim()).toBe(`Removed login credentials for ${basic.host}/team`);
    expect(await entries()).toEqual([basic.host]);
    // Docker's URL form names the registry, whatever its path.
    expect((await ckpt(['login', `https://${basic.host}/v1/`, '--username', USER, '--password-stdin'], { input: `${PASSWORD}\n`, env })).exitCode).toBe(0);
    expect(await entries()).toEqual([basic.host]);
    expect((await ckpt(['logout', `https://${basic.host}/v1/`], { env })).exitCode).toBe(0);
    expect(await entries()).toEqual([]);
    expect((await ckpt(['login', `${basic.host}/Team`, '--creds', `${USER}:${PASSWORD}`], { env })).exitCode).toBe(2);
    // podman refuses a tag in a key; a password in the address is refused without being printed.
    expect((await ckpt(['login', `${basic.host}/team/app:v1`, '--creds', `${USER}:${PASSWORD}`], { env })).exitCode).toBe(2);
    const inUrl = await ckpt(['login', `https://${USER}:${PASSWORD}@${basic.host}`, '--creds', `${USER}:${PASSWORD}`], { env });
    expect(inUrl.exitCode).toBe(2);
    expect(`${inUrl.stdout}${inUrl.stderr}`).not.toContain(PASSWORD);
    expect(inUrl.stderr).toContain('[redacted]@');
    // Nor in an image reference, with a path after the host or without one.
    for (const ref of [`${USER}:${PASSWORD}@${basic.host}/ckpt/x:v1`, `docker://${USER}:${PASSWORD}@${basic.host}`]) {
      const inRef = await ckpt(['inspect', ref], { env });
      expect(inRef.exitCode).toBe(2);
      expect(inRef.stderr).toMatch(/^ckpt: (docker:\/\/)?\[redacted\]@127\.0\.0\.1:\d+(\/ckpt\/x:v1)?: a registry address holds no credentials/);
      expect(inRef.stderr).not.toContain(PASSWORD);
    }
  });

  it('token auth: a bearer token from the realm', async () => {
    const run = await ckpt(['push', fixture('containerd-counter.tar'), `${token.host}/ckpt/ctrd:v1`, '--creds', `${USER}:${PASSWORD}`, '-q']);
    expect(run.exitCode, run.stderr).toBe(0);
    const copy = await ckpt(['copy', `${token.host}/ckpt/ctrd:v1`, `${token.host}/other/ctrd:v1`, '--creds', `${USER}:${PASSWORD}`, '-q']);
    expect(copy.stdout.trim()).toBe(run.stdout.trim());
  });

  it('--creds go to the registry written to, not to the source on another registry', async () => {
    const source = `${token.host}/ckpt/creds-src:v1`;
    expect((await ckpt(['push', fixture('crio-counter.tar'), source, '--creds', `${USER}:${PASSWORD}`, '-q'])).exitCode).toBe(0);
    const before = token.tokenServer?.issued.length ?? 0;
    // The source lets anyone pull; only the destination needs the password.
    const run = await ckpt(['copy', source, `${basic.host}/ckpt/creds-dst:v1`, '--creds', `${USER}:${PASSWORD}`, '-q']);
    expect(run.exitCode, run.stderr).toBe(0);
    const asked = token.tokenServer?.issued.slice(before) ?? [];
    expect(asked.length).toBeGreaterThan(0);
    expect(asked.map((t) => t.user)).toEqual(asked.map(() => undefined));
    // push from a registry image: the same rule.
    const pushed = await ckpt(['push', source, `${basic.host}/ckpt/creds-dst:v2`, '--creds', `${USER}:${PASSWORD}`, '-q']);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    expect(token.tokenServer?.issued.slice(before).map((t) => t.user)).not.toContain(USER);
    // --src-creds are the source's own.
    const withSource = await ckpt(['copy', source, `${basic.host}/ckpt/creds-dst:v3`, '--creds', `${USER}:${PASSWORD}`, '--src-creds', `${USER}:${PASSWORD}`, '-q']);
    expect(withSource.exitCode, withSource.stderr).toBe(0);
    expect(token.tokenServer?.issued.at(-1)?.user).toBe(USER);
    // A source that asks for a login, given --creds alone: the message says where they went.
    const refused = await ckpt(['copy', `${basic.host}/ckpt/creds-dst:v1`, `${token.host}/ckpt/creds-back:v1`, '--creds', `${USER}:${PASSWORD}`]);
    expect(refused.exitCode).toBe(5);
    expect(refused.stderr).toContain(`(the credentials given go to ${token.host}, the destination; give the source's with --src-creds (source.credentials))`);
    expect(refused.stderr).not.toContain(PASSWORD);
  });

  it('an auth-file entry for the namespace wins over the one for the host', async () => {
    expect((await ckpt(['push', fixture('crio-counter.tar'), `${basic.host}/team/app:v1`, '--creds', `${USER}:${PASSWORD}`, '-q'])).exitCode).toBe(0);
    const authFile = join(await tempDir(), 'auth.json');
    const auth = (password: string) => ({ auth: Buffer.from(`${USER}:${password}`).toString('base64') });
    await writeFile(authFile, JSON.stringify({ auths: { [basic.host]: auth('wrong-secret'), [`${basic.host}/team`]: auth(PASSWORD) } }));
    const inTeam = await ckpt(['inspect', `${basic.host}/team/app:v1`, '--authfile', authFile]);
    expect(inTeam.exitCode, inTeam.stderr).toBe(0);
    // Elsewhere on the host the host's entry applies, and the registry refuses it.
    expect((await ckpt(['inspect', `${basic.host}/ckpt/crio:v1`, '--authfile', authFile])).exitCode).toBe(5);
  });

  it('TLS with a custom CA: refused without it, accepted with --ca-file', async () => {
    const target = `${tls.host}/ckpt/crio:v1`;
    const without = await ckpt(['push', fixture('crio-counter.tar'), target]);
    expect(without.exitCode).toBe(6);
    expect(without.stderr).toMatch(/certificate/i);
    const caFile = join(await tempDir(), 'ca.crt');
    await writeFile(caFile, tls.caCert ?? '');
    const withCa = await ckpt(['push', fixture('crio-counter.tar'), target, '--ca-file', caFile, '-q']);
    expect(withCa.exitCode, withCa.stderr).toBe(0);
    // Plain HTTP to it: the registry's own words, not "unexpected response".
    const plain = await ckpt(['inspect', target, '--plain-http']);
    expect(plain.exitCode).toBe(6);
    expect(plain.stderr).toContain('HTTP 400: Client sent an HTTP request to an HTTPS server.');
  });

  it('a registry whose certificate an issuing CA signed: that CA alone, given with --ca-file, is trusted', async () => {
    const chain = await makeIssuedChain(await tempDir());
    const issued = await startRegistry({ tlsFiles: chain });
    try {
      const target = `${issued.host}/ckpt/issued:v1`;
      const pushed = await ckpt(['push', fixture('crio-counter.tar'), target, '--ca-file', chain.issuingCa, '-q']);
      expect(pushed.exitCode, pushed.stderr).toBe(0);
      // Not any CA: without it, refused for its certificate, not downgraded to plain HTTP.
      const refused = await ckpt(['inspect', target]);
      expect(refused.exitCode).toBe(6);
      expect(refused.stderr).toMatch(/issuer certificate|UNABLE_TO_/);
      expect(refused.stderr).not.toContain('HTTP 400');
    } finally {
      await issued.stop();
    }
  });

  it('a registry that wants a client certificate: certs.d gives it; without one, the message says so, not HTTP 400 from plain HTTP', async () => {
    const mtls = await startRegistry({ tls: true, clientCerts: true });
    try {
      const home = await tempDir();
      const certs = join(home, '.config/containers/certs.d', mtls.host);
      await mkdir(certs, { recursive: true });
      await writeFile(join(certs, 'ca.crt'), mtls.caCert ?? '');
      const push = () => ckpt(['push', fixture('crio-counter.tar'), `${mtls.host}/ckpt/mtls:v1`, '-q'], { env: { HOME: home } });
      // 127.0.0.1 may speak plain HTTP: a TLS server closing on a client without a certificate is still a TLS server.
      const without = await push();
      expect(without.exitCode).toBe(6);
      expect(without.stderr).toContain('client certificate');
      expect(without.stderr).not.toContain('HTTP 400');
      await copyFile(mtls.client?.cert ?? '', join(certs, 'client.cert'));
      await copyFile(mtls.client?.key ?? '', join(certs, 'client.key'));
      const pushed = await push();
      expect(pushed.exitCode, pushed.stderr).toBe(0);
    } finally {
      await mtls.stop();
    }
  });

  it('registries.conf insecure = true for a namespace: its certificate is not verified there, and only there', async () => {
    const conf = join(await tempDir(), 'registries.conf');
    await writeFile(conf, `[[registry]]\nlocation = "${tls.host}/lab"\ninsecure = true\n`);
    const env = { CONTAINERS_REGISTRIES_CONF: conf };
    const inLab = await ckpt(['push', fixture('crio-counter.tar'), `${tls.host}/lab/crio:v1`, '-q'], { env });
    expect(inLab.exitCode, inLab.stderr).toBe(0);
    const elsewhere = await ckpt(['push', fixture('crio-counter.tar'), `${tls.host}/prod/crio:v1`], { env });
    expect(elsewhere.exitCode).toBe(6);
    expect(elsewhere.stderr).toMatch(/certificate/i);
  });
});

describe('copy within a registry that refuses the mount', () => {
  let registry: RegistryServer;
  const users = { alice: 'alice-pw', bob: 'bob-pw' };
  beforeAll(async () => {
    // bob may push to dst/* but not read src/*: a mount from src needs both.
    registry = await startRegistry({
      auth: 'token',
      users,
      token: { grant: (user, repository, actions) => (!user || (user === 'bob' && repository.startsWith('src/')) ? [] : actions) },
    });
  });
  afterAll(() => registry.stop());

  it('uploads the blobs instead, as skopeo does', async () => {
    const source = `${registry.host}/src/app:v1`;
    const pushed = await ckpt(['push', fixture('crio-counter.tar'), source, '--creds', 'alice:alice-pw', '-q']);
    expect(pushed.exitCode, pushed.stderr).toBe(0);
    const copy = await ckpt(['copy', source, `${registry.host}/dst/app:v1`, '--src-creds', 'alice:alice-pw', '--creds', 'bob:bob-pw', '--progress', '-q']);
    expect(copy.exitCode, copy.stderr).toBe(0);
    expect(copy.stdout.trim()).toBe(pushed.stdout.trim());
    expect(copy.stderr).not.toContain('mounted');
  });
});

describe('a registry that stops answering', () => {
  it('SIGINT ends a command waiting on it within a second, with 130, even while the connection is set up', async () => {
    const registry = await startRegistry();
    const work = await tempDir();
    try {
      // The process stopped, the kernel still accepts connections: nothing ever answers. On
      // 127.0.0.1, which may speak plain HTTP, the first request probes HTTPS and waits there.
      registry.signal('SIGSTOP');
      const image = `${registry.host}/ckpt/counter:v1`;
      for (const args of [['inspect', image], ['pull', image, join(work, 'counter')], ['push', fixture('podman-counter.tar'), image]]) {
        const { code, stderr, ms } = await interruptAfter(args, 1500);
        expect(code, `${args[0]}: ${stderr}`).toBe(130);
        expect(ms, args[0]).toBeLessThan(1000);
        expect(stderr).toMatch(/^ckpt: .*: interrupted \(SIGINT\)\n$/);
      }
      expect(await readdir(work)).toEqual([]);
    } finally {
      registry.signal('SIGCONT');
      await registry.stop();
    }
  });
});
