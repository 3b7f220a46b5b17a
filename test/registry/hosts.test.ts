import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { hostSettings, parseToml, type HostOptions } from '../../src/registry/hosts.js';
import { makeTlsFiles } from '../helpers/certs.js';
import { rejection } from '../helpers/rejection.js';

let root: string;
let options: HostOptions;

const pem = (kind: string, body: string) => `-----BEGIN ${kind}-----\n${body}\n-----END ${kind}-----\n`;

async function put(path: string, text: string): Promise<string> {
  const file = join(root, path);
  await mkdir(dirname(file), { recursive: true });
  await writeFile(file, text);
  return file;
}

/** `http` where plain HTTP is allowed (HTTPS tried first) or forced, `https` where TLS is required. */
async function scheme(registry: string, extra: HostOptions = {}): Promise<string> {
  const settings = await hostSettings(registry, { ...options, ...extra });
  return settings.scheme === 'http' || settings.httpFallback ? 'http' : 'https';
}

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'ckpt-hosts-'));
  // Every default location redirected into the temporary directory.
  options = {
    certsDirs: [join(root, 'containers/certs.d'), join(root, 'docker/certs.d')],
    registriesConf: join(root, 'registries.conf'),
    registriesConfDirs: [join(root, 'registries.conf.d')],
    env: {},
    home: join(root, 'home'),
  };
});

afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('scheme', () => {
  it('is https with nothing extra by default', async () => {
    expect(await hostSettings('registry.example.com', options)).toEqual({ scheme: 'https', httpFallback: false, ca: [] });
  });

  it.each(['localhost', 'localhost:5000', 'LOCALHOST:5000', '127.0.0.1', '127.1.2.3:8080', '[::1]:5000', '::1', '[::ffff:127.0.0.1]:80'])(
    'allows plain HTTP to the loopback host %s',
    async (registry) => {
      expect(await scheme(registry)).toBe('http');
    },
  );

  it.each(['128.0.0.1:5000', '10.0.0.1', 'localhost.example.com', 'mylocalhost:5000', '[::2]:5000', 'docker.io'])(
    'keeps TLS for %s',
    async (registry) => {
      expect(await scheme(registry)).toBe('https');
    },
  );

  it('talks plain HTTP only when asked (--plain-http)', async () => {
    expect(await hostSettings('registry.example.com', { ...options, plainHttp: true })).toMatchObject({ scheme: 'http' });
    expect(await hostSettings('127.0.0.1:5000', options)).toMatchObject({ scheme: 'https', httpFallback: true });
  });

  it('refuses names that could leave certs.d', async () => {
    expect((await rejection(hostSettings('../etc', options))).code).toBe('INVALID_REFERENCE');
    expect((await rejection(hostSettings('..', options))).code).toBe('INVALID_REFERENCE');
  });
});

describe('registries.conf', () => {
  it('allows plain HTTP where a [[registry]] location says insecure = true', async () => {
    await put(
      'registries.conf',
      `# system registries
unqualified-search-registries = ["docker.io", 'quay.io']

[[registry]]
location = "insecure.example.com:5000"   # our lab
insecure = true

[[registry]]
location = "secure.example.com"
insecure = false
`,
    );
    expect(await scheme('insecure.example.com:5000')).toBe('http');
    expect(await scheme('insecure.example.com')).toBe('https');
    expect(await scheme('secure.example.com')).toBe('https');
    expect(await scheme('other.example.com')).toBe('https');
  });

  it('matches prefixes by whole components, the longest winning', async () => {
    await put(
      'registries.conf',
      `[[registry]]
prefix = "example.com/lab"
location = "example.com/lab"
insecure = true

[[registry]]
location = "example.com/lab/prod"
insecure = false
`,
    );
    expect(await scheme('example.com', { repository: 'lab/app' })).toBe('http');
    expect(await scheme('example.com', { repository: 'lab/prod/app' })).toBe('https');
    expect(await scheme('example.com', { repository: 'laboratory/app' })).toBe('https');
    expect(await scheme('example.com')).toBe('https');
  });

  it('matches wildcard subdomain prefixes', async () => {
    await put('registries.conf', `[[registry]]\nprefix = "*.lab.example.com"\nlocation = "mirror.example.com"\ninsecure = true\n`);
    expect(await scheme('a.lab.example.com')).toBe('http');
    expect(await scheme('b.a.lab.example.com:5000')).toBe('http');
    expect(await scheme('lab.example.com')).toBe('https');
    expect(await scheme('a.lab.example.com.evil.net')).toBe('https');
  });

  it('does not take a mirror’s settings for its registry', async () => {
    await put(
      'registries.conf',
      `[[registry]]
location = "example.com"

[[registry.mirror]]
location = "mirror.example.com"
insecure = true
`,
    );
    expect(await scheme('example.com')).toBe('https');
  });

  it('reads the version 1 [registries.insecure] form', async () => {
    await put(
      'registries.conf',
      `[registries.search]
registries = ['docker.io']

[registries.insecure]
registries = [
  "old.example.com:5000", # trailing comma and comments inside
]
`,
    );
    expect(await scheme('old.example.com:5000')).toBe('http');
  });

  it('lets drop-ins replace entries of the main file, in name order', async () => {
    await put('registries.conf', `[[registry]]\nlocation = "a.example.com"\ninsecure = true\n`);
    await put('registries.conf.d/10-a.conf', `[[registry]]\nlocation = "a.example.com"\ninsecure = false\n`);
    await put('registries.conf.d/20-b.conf', `[[registry]]\nlocation = "b.example.com"\ninsecure = true\n`);
    await put('registries.conf.d/05-b.conf', `[[registry]]\nlocation = "b.example.com"\ninsecure = false\n`);
    await put('registries.conf.d/ignored.txt', `[[registry]]\nlocation = "c.example.com"\ninsecure = true\n`);
    expect(await scheme('a.example.com')).toBe('https');
    expect(await scheme('b.example.com')).toBe('http');
    expect(await scheme('c.example.com')).toBe('https');
  });

  it("a user's own registries.conf takes the user's drop-ins, not the system's", async () => {
    const defaults = { ...options, registriesConf: undefined, registriesConfDirs: undefined, systemDir: join(root, 'etc') };
    await put('etc/registries.conf.d/50-lab.conf', `[[registry]]\nlocation = "lab.example.com"\ninsecure = true\n`);
    await put('home/.config/containers/registries.conf.d/50-mine.conf', `[[registry]]\nlocation = "mine.example.com"\ninsecure = true\n`);
    expect(await scheme('lab.example.com', defaults)).toBe('http');
    expect(await scheme('mine.example.com', defaults)).toBe('http');
    await put('home/.config/containers/registries.conf', `unqualified-search-registries = ["docker.io"]\n`);
    expect(await scheme('lab.example.com', defaults)).toBe('https');
    expect(await scheme('mine.example.com', defaults)).toBe('http');
  });

  it('insecure = true also lets an unverified certificate through, as in containers/image; loopback alone does not', async () => {
    await put('registries.conf', `[[registry]]\nlocation = "lab.example.com/team"\ninsecure = true\n`);
    expect(await hostSettings('lab.example.com', { ...options, repository: 'team/app' })).toMatchObject({ httpFallback: true, insecure: true });
    expect((await hostSettings('lab.example.com', { ...options, repository: 'other/app' })).insecure).toBeUndefined();
    expect((await hostSettings('127.0.0.1:5000', options)).insecure).toBeUndefined();
  });

  it('an insecure entry whose prefix is rewritten to another location does not make the prefix insecure', async () => {
    await put('registries.conf', `[[registry]]\nprefix = "example.com/foo"\nlocation = "mirror.internal:5000/bar"\ninsecure = true\n`);
    expect(await hostSettings('example.com', { ...options, repository: 'foo/x' })).toMatchObject({ httpFallback: false });
    expect((await hostSettings('example.com', { ...options, repository: 'foo/x' })).insecure).toBeUndefined();
  });

  it('reads $CONTAINERS_REGISTRIES_CONF when no file is named', async () => {
    const file = await put('custom.conf', `[[registry]]\nlocation = "a.example.com"\ninsecure = true\n`);
    expect(await scheme('a.example.com', { registriesConf: undefined, env: { CONTAINERS_REGISTRIES_CONF: file } })).toBe('http');
  });

  it('reads the whole of a real registries.conf with aliases', async () => {
    await put(
      'registries.conf',
      `unqualified-search-registries = ["registry.fedoraproject.org", "docker.io"]
short-name-mode = "enforcing"

[aliases]
"fedora" = "registry.fedoraproject.org/fedora"
"busybox" = 'docker.io/library/busybox'

[[registry]]
prefix = "quay.io"
location = "quay.io"
blocked = false
mirror = [{ location = "q.example.com", insecure = true }]
`,
    );
    expect(await scheme('quay.io')).toBe('https');
  });

  it('reports broken TOML with its file and line', async () => {
    const file = await put('registries.conf', `[[registry]]\nlocation = "a.example.com\ninsecure = true\n`);
    const err = await rejection(hostSettings('a.example.com', options));
    expect(err.code).toBe('INVALID_METADATA');
    expect(err.subject).toBe(file);
    expect(err.message).toContain('line 2');
  });

  it('reports entries of the wrong type', async () => {
    await put('registries.conf', `[[registry]]\nlocation = "a.example.com"\ninsecure = "yes"\n`);
    const err = await rejection(hostSettings('a.example.com', options));
    expect(err.code).toBe('INVALID_METADATA');
    expect(err.message).toContain('registry.0.insecure');
  });
});

describe('certificates', () => {
  it('loads CAs from --ca-file and from the first certs.d directory for the host alone, as containers/image', async () => {
    const caFile = await put('ca.pem', pem('CERTIFICATE', 'flag'));
    await put('docker/certs.d/registry.example.com:5000/b.crt', pem('CERTIFICATE', 'docker-b'));
    await put('docker/certs.d/registry.example.com:5000/a.crt', pem('CERTIFICATE', 'docker-a'));
    await put('docker/certs.d/registry.example.com/other.crt', pem('CERTIFICATE', 'other port'));
    const ca = async () => (await hostSettings('registry.example.com:5000', { ...options, caFiles: [caFile] })).ca.map((b) => b.toString().split('\n')[1]);
    expect(await ca()).toEqual(['flag', 'docker-a', 'docker-b']);
    // A directory in the first place wins, alone: Podman and skopeo would not read docker's then.
    await put('containers/certs.d/registry.example.com:5000/ca.crt', pem('CERTIFICATE', 'containers'));
    await put('docker/certs.d/registry.example.com:5000/client.cert', pem('CERTIFICATE', 'client'));
    expect(await ca()).toEqual(['flag', 'containers']);
    const settings = await hostSettings('registry.example.com:5000', options);
    expect(settings.scheme).toBe('https');
    expect(settings.clientCert).toBeUndefined();
  });

  it('loads a client certificate and its key, refusing a key that is another\'s or broken, naming it', async () => {
    const pki = join(root, 'pki');
    await mkdir(pki);
    const made = await makeTlsFiles(pki);
    const cert = await readFile(made.clientCert, 'utf8');
    await put('docker/certs.d/registry.example.com/client.cert', cert);
    const keyFile = await put('docker/certs.d/registry.example.com/client.key', await readFile(made.clientKey, 'utf8'));
    const settings = await hostSettings('registry.example.com', options);
    expect(settings.clientCert?.cert.toString()).toBe(cert);
    expect(settings.clientCert?.key.toString()).toContain('EC PRIVATE KEY');
    // The server's key beside the client's certificate; then a damaged key.
    const wrong: Array<[string, string]> = [
      [await readFile(made.key, 'utf8'), 'is not the key of client.cert'],
      [pem('EC PRIVATE KEY', 'AAAA'), 'not a private key ckpt can use (encrypted, or damaged)'],
    ];
    for (const [key, why] of wrong) {
      await writeFile(keyFile, key);
      const err = await rejection(hostSettings('registry.example.com', options));
      expect(err.code).toBe('INVALID_METADATA');
      expect(err.message).toBe(`${keyFile}: ${why}`);
    }
  });

  it.each([
    ['client.cert', 'client.key'],
    ['client.key', 'client.cert'],
  ])('refuses %s without %s', async (present, missing) => {
    const kind = present.endsWith('.key') ? 'PRIVATE KEY' : 'CERTIFICATE';
    await put(`containers/certs.d/registry.example.com/${present}`, pem(kind, 'x'));
    const err = await rejection(hostSettings('registry.example.com', options));
    expect(err.code).toBe('INVALID_METADATA');
    expect(err.message).toContain(missing);
  });

  it('refuses a CA that is not PEM', async () => {
    const file = await put('containers/certs.d/registry.example.com/ca.crt', 'garbage');
    const err = await rejection(hostSettings('registry.example.com', options));
    expect(err.code).toBe('INVALID_METADATA');
    expect(err.subject).toBe(file);
  });

  it('reports a missing --ca-file', async () => {
    const err = await rejection(hostSettings('registry.example.com', { ...options, caFiles: [join(root, 'nope.pem')] }));
    expect(err.code).toBe('NOT_FOUND');
  });

  it('keeps TLS settings for loopback hosts too', async () => {
    await put('containers/certs.d/localhost:5000/ca.crt', pem('CERTIFICATE', 'local'));
    const settings = await hostSettings('localhost:5000', options);
    expect(settings).toMatchObject({ scheme: 'https', httpFallback: true });
    expect(settings.ca).toHaveLength(1);
  });
});

describe('parseToml', () => {
  it('reads strings, escapes, numbers, booleans, arrays, inline and dotted tables', () => {
    const doc = parseToml(
      `title = "a \\"quoted\\" \\u00e9 \\U0001F600 \\\\ tab\\t"
literal = 'C:\\no\\escapes'
n = 1_000
f = -2.5e3
yes = true
nested = [[1, 2], ["x"]]
point = { x = 1, y.z = "deep" }
a.b.c = "dotted"
"quoted key" = 1

[table.sub] # comment
k = false

[[items]]
name = "one"
[[items.parts]]
id = 1
[[items]]
name = "two"
`,
      'test.toml',
    );
    expect(JSON.parse(JSON.stringify(doc))).toEqual({
      title: 'a "quoted" é 😀 \\ tab\t',
      literal: 'C:\\no\\escapes',
      n: 1000,
      f: -2500,
      yes: true,
      nested: [[1, 2], ['x']],
      point: { x: 1, y: { z: 'deep' } },
      a: { b: { c: 'dotted' } },
      'quoted key': 1,
      table: { sub: { k: false } },
      items: [{ name: 'one', parts: [{ id: 1 }] }, { name: 'two' }],
    });
  });

  it('keeps __proto__ an ordinary key', () => {
    const doc = parseToml(`[__proto__]\npolluted = true\n`, 'test.toml');
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(Object.keys(doc)).toEqual(['__proto__']);
    expect(JSON.stringify(doc)).toBe('{"__proto__":{"polluted":true}}');
  });

  it.each([
    ['a = """multi\nline"""', 'line 1: multi-line strings'],
    ['a = 1979-05-27', 'line 1: unsupported or malformed value'],
    ['a = 1\na = 2', 'line 2: a is defined twice'],
    ['a = "x" b = 1', 'line 1: expected the end of the line'],
    ['a = [1, 2', 'expected "," or "]"'],
    ['[a]\nb = 1\n[a.b]', 'line 3: a.b is not a table'],
    ['= 1', 'line 1: expected a key'],
    ['a = "\\q"', 'invalid escape'],
  ])('refuses %j', (text, message) => {
    expect(() => parseToml(text, 'bad.toml')).toThrow(message);
  });
});
