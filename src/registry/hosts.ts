import { createPrivateKey, type KeyObject, X509Certificate } from 'node:crypto';
import { readdir, readFile, stat } from 'node:fs/promises';
import { BlockList, isIP } from 'node:net';
import { homedir } from 'node:os';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { CkptError, fromSystemError } from '../errors.js';

/**
 * How to reach a registry host: which scheme, which extra trust anchors and which client
 * certificate, from the places Podman, Skopeo and Docker users already configure them. This module
 * only decides; whoever connects applies the settings (and maps `docker.io` to its real host).
 */

export interface HostSettings {
  /** `http` only where the user asked for plain HTTP (`--plain-http`). */
  scheme: 'https' | 'http';
  /**
   * Plain HTTP is allowed (loopback, or registries.conf `insecure`): HTTPS is tried first and HTTP
   * used when the host does not speak TLS, as containers/image does.
   */
  httpFallback?: boolean;
  /**
   * Extra trust anchors (PEM) for this host, to be added to the system roots: Node's `ca` option
   * replaces them, so pass `[...tls.rootCertificates, ...ca]`.
   */
  ca: Buffer[];
  /** A client certificate and its key (PEM) from certs.d, for registries that ask for one. */
  clientCert?: { cert: Buffer; key: Buffer };
  /**
   * registries.conf marks the host, or the repository's namespace, `insecure`: plain HTTP, and TLS
   * with a certificate that is not verified ("untrusted certificates", containers-registries.conf(5)).
   */
  insecure?: boolean;
}

export interface HostOptions {
  /** Extra PEM CA files (`--ca-file`), trusted for this host. */
  caFiles?: string[];
  /** Allow plain HTTP (`--plain-http`). */
  plainHttp?: boolean;
  /** The repository, so that registries.conf entries scoped to a namespace apply. */
  repository?: string;
  /**
   * Directories holding a `HOST[:PORT]` subdirectory of certificates each; by default
   * ~/.config/containers/certs.d, /etc/containers/certs.d and /etc/docker/certs.d, all of them read.
   */
  certsDirs?: string[];
  /**
   * The main registries.conf; by default $CONTAINERS_REGISTRIES_CONF, else
   * ~/.config/containers/registries.conf if it exists, else /etc/containers/registries.conf.
   */
  registriesConf?: string;
  /**
   * Drop-in directories (`*.conf`, read after the main file); by default the system's, then the
   * user's, or the user's alone where the main file is the user's.
   */
  registriesConfDirs?: string[];
  /** Where the system's registries.conf and registries.conf.d are; `/etc/containers` by default. */
  systemDir?: string;
  /** Where CONTAINERS_REGISTRIES_CONF is read; `process.env` by default. */
  env?: NodeJS.ProcessEnv;
  /** The user's home directory; `os.homedir()` by default. */
  home?: string;
}

/** The settings for `registry` (`HOST[:PORT]`, as in references and as certs.d names directories). */
export async function hostSettings(registry: string, options: HostOptions = {}): Promise<HostSettings> {
  checkHostName(registry);
  const ca = await Promise.all((options.caFiles ?? []).map((file) => readPem(file, 'CERTIFICATE')));
  const fromDirs = await readCertsDirs(registry, options);
  const insecure = await insecureInConf(registry, options);
  const settings: HostSettings = options.plainHttp
    ? { scheme: 'http', ca: [...ca, ...fromDirs.ca] }
    : { scheme: 'https', httpFallback: insecure || isLoopback(registry), ca: [...ca, ...fromDirs.ca] };
  if (insecure) settings.insecure = true;
  if (fromDirs.clientCert) settings.clientCert = fromDirs.clientCert;
  return settings;
}

/** The name becomes a directory name under certs.d: nothing that could leave that directory. */
function checkHostName(registry: string): void {
  if (!/^[\w.:[\]-]+$/.test(registry) || registry === '.' || registry === '..') {
    throw new CkptError('INVALID_REFERENCE', 'invalid registry host', { subject: registry });
  }
}

async function insecureInConf(registry: string, options: HostOptions): Promise<boolean> {
  const name = options.repository ? `${registry}/${options.repository}` : registry;
  return insecureInRegistriesConf(name, await readRegistriesConf(options));
}

// ---------------------------------------------------------------------------------------------
// Loopback

const LOOPBACK = new BlockList();
LOOPBACK.addSubnet('127.0.0.0', 8, 'ipv4');
LOOPBACK.addAddress('::1', 'ipv6');

/** The host of `HOST[:PORT]`, without the brackets of an IPv6 literal. */
function hostOf(registry: string): string {
  if (isIP(registry)) return registry;
  if (registry.startsWith('[')) return registry.slice(1, registry.indexOf(']'));
  return registry.split(':')[0] ?? '';
}

/** Traffic to these never leaves the machine, so plain HTTP exposes nothing (Docker's rule too). */
function isLoopback(registry: string): boolean {
  const host = hostOf(registry).toLowerCase();
  if (host === 'localhost') return true;
  const family = isIP(host);
  return family !== 0 && LOOPBACK.check(host, family === 4 ? 'ipv4' : 'ipv6');
}

// ---------------------------------------------------------------------------------------------
// certs.d

interface CertsDirContents {
  ca: Buffer[];
  clientCert?: { cert: Buffer; key: Buffer };
}

function certsDirs(options: HostOptions): string[] {
  const home = options.home ?? homedir();
  return options.certsDirs ?? [join(home, '.config/containers/certs.d'), '/etc/containers/certs.d', '/etc/docker/certs.d'];
}

/**
 * The first certs.d directory that has one for the host, alone, as containers/image reads them:
 * the union would trust, or send, what Podman and skopeo on the same node do not.
 */
async function readCertsDirs(registry: string, options: HostOptions): Promise<CertsDirContents> {
  for (const base of certsDirs(options)) {
    const found = await readCertsDir(join(base, registry));
    if (found) return found;
  }
  return { ca: [] };
}

/**
 * Docker's layout, which containers/image shares: `*.crt` are CAs, `NAME.cert` with `NAME.key` a
 * client certificate. Half a pair is an error, as there, rather than a handshake failing later.
 */
async function readCertsDir(dir: string): Promise<CertsDirContents | undefined> {
  let names: string[];
  try {
    names = (await readdir(dir)).sort();
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw fromSystemError(err, dir);
  }
  const contents: CertsDirContents = { ca: [] };
  for (const name of names) {
    if (name.endsWith('.crt')) contents.ca.push(await readPem(join(dir, name), 'CERTIFICATE'));
    const stem = name.replace(/\.(cert|key)$/, '');
    if (stem === name) continue;
    const missing = [`${stem}.cert`, `${stem}.key`].find((half) => !names.includes(half));
    if (missing) throw new CkptError('INVALID_METADATA', `${name} has no matching ${missing}`, { subject: dir });
    if (name.endsWith('.cert') && !contents.clientCert) {
      contents.clientCert = await readClientPair(join(dir, name), join(dir, `${stem}.key`));
    }
  }
  return contents;
}

/**
 * A client certificate and its key, checked to go together now: a key that is another's,
 * encrypted or broken would otherwise fail every handshake as a network error naming no file.
 */
async function readClientPair(certFile: string, keyFile: string): Promise<{ cert: Buffer; key: Buffer }> {
  const cert = await readPem(certFile, 'CERTIFICATE');
  const key = await readPem(keyFile, 'PRIVATE KEY');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(key);
  } catch {
    throw new CkptError('INVALID_METADATA', 'not a private key ckpt can use (encrypted, or damaged)', { subject: keyFile });
  }
  let matches: boolean;
  try {
    matches = new X509Certificate(cert).checkPrivateKey(privateKey);
  } catch {
    throw new CkptError('INVALID_METADATA', 'not a certificate ckpt can read', { subject: certFile });
  }
  if (!matches) throw new CkptError('INVALID_METADATA', `is not the key of ${basename(certFile)}`, { subject: keyFile });
  return { cert, key };
}

/** Reads a PEM file, checking its kind now so that a wrong file is named rather than a handshake failing. */
async function readPem(file: string, kind: 'CERTIFICATE' | 'PRIVATE KEY'): Promise<Buffer> {
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw fromSystemError(err, file);
  }
  // Matches `BEGIN CERTIFICATE` and every private key flavour (`BEGIN RSA PRIVATE KEY`, ...).
  const pattern = kind === 'CERTIFICATE' ? /-----BEGIN CERTIFICATE-----/ : /-----BEGIN [A-Z ]*PRIVATE KEY-----/;
  if (!pattern.test(bytes.toString('latin1'))) {
    throw new CkptError('INVALID_METADATA', `not a PEM ${kind.toLowerCase()}`, { subject: file });
  }
  return bytes;
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

// ---------------------------------------------------------------------------------------------
// registries.conf (containers-registries.conf(5))

const RegistriesConfSchema = z.looseObject({
  registry: z
    .array(z.looseObject({ prefix: z.string().optional(), location: z.string().optional(), insecure: z.boolean().optional() }))
    .optional(),
  // Version 1 of the format: `[registries.insecure] registries = [...]`.
  registries: z
    .looseObject({ insecure: z.looseObject({ registries: z.array(z.string()).optional() }).optional() })
    .optional(),
});

async function registriesConfFiles(options: HostOptions): Promise<string[]> {
  const home = options.home ?? homedir();
  const userDir = join(home, '.config/containers');
  const systemDir = options.systemDir ?? '/etc/containers';
  const main =
    options.registriesConf || (options.env ?? process.env).CONTAINERS_REGISTRIES_CONF || (await userOrSystemConf(userDir, systemDir));
  // A user's own registries.conf takes only the user's drop-ins (containers-registries.conf.d(5)).
  const userDropIns = join(userDir, 'registries.conf.d');
  const dirs = options.registriesConfDirs ?? (main === join(userDir, 'registries.conf') ? [userDropIns] : [join(systemDir, 'registries.conf.d'), userDropIns]);
  const dropIns = await Promise.all(dirs.map(confFilesIn));
  return [main, ...dropIns.flat()];
}

/** A user's registries.conf replaces the system's, as in containers/image. */
async function userOrSystemConf(userDir: string, systemDir: string): Promise<string> {
  const user = join(userDir, 'registries.conf');
  return (await stat(user).then(() => true, () => false)) ? user : join(systemDir, 'registries.conf');
}

async function confFilesIn(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((name) => name.endsWith('.conf')).sort().map((name) => join(dir, name));
  } catch (err) {
    if (isMissing(err)) return [];
    throw fromSystemError(err, dir);
  }
}

/**
 * The `insecure` flag of every prefix, merged as containers/image merges drop-ins: an entry replaces
 * an earlier one with the same prefix. A `[[registry]]` entry's prefix defaults to its location.
 */
async function readRegistriesConf(options: HostOptions): Promise<Map<string, boolean>> {
  const byPrefix = new Map<string, boolean>();
  for (const file of await registriesConfFiles(options)) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      if (isMissing(err)) continue;
      throw fromSystemError(err, file);
    }
    const result = RegistriesConfSchema.safeParse(parseToml(text, file));
    if (!result.success) {
      const issue = result.error.issues[0];
      throw new CkptError('INVALID_METADATA', `unexpected ${issue?.path.join('.') ?? 'content'}: ${issue?.message ?? 'invalid'}`, {
        subject: file,
      });
    }
    for (const host of result.data.registries?.insecure?.registries ?? []) byPrefix.set(host, true);
    for (const entry of result.data.registry ?? []) {
      const location = entry.location?.replace(/\/+$/, '');
      const prefix = entry.prefix?.replace(/\/+$/, '') || location;
      // insecure is the location's: where a prefix is rewritten to another place, ckpt (which
      // goes to the name it is given, not the location) keeps TLS for the name. A wildcard prefix
      // names no one place: its flag stands.
      const rewritten = location !== undefined && location !== prefix && !prefix?.startsWith('*.');
      if (prefix) byPrefix.set(prefix, (entry.insecure ?? false) && !rewritten);
    }
  }
  return byPrefix;
}

/** The flag of the longest prefix matching the name, as containers/image's FindRegistry picks it. */
function insecureInRegistriesConf(name: string, byPrefix: Map<string, boolean>): boolean {
  let best = -1;
  let insecure = false;
  for (const [prefix, flag] of byPrefix) {
    const length = prefixMatch(name, prefix);
    if (length > best) [best, insecure] = [length, flag];
  }
  return insecure;
}

/**
 * How much of `name` (`host[:port][/repo]`) a prefix matches, or -1. A prefix matches whole path
 * components; `*.example.com` matches any subdomain of example.com, and nothing else.
 */
function prefixMatch(name: string, prefix: string): number {
  if (prefix.startsWith('*.')) {
    const host = name.split('/')[0] ?? '';
    const bare = host.replace(/:\d+$/, '');
    return bare.endsWith(prefix.slice(1)) ? bare.length : -1;
  }
  if (name === prefix) return prefix.length;
  const next = name[prefix.length];
  return name.startsWith(prefix) && (next === '/' || next === ':' || next === '@') ? prefix.length : -1;
}

// ---------------------------------------------------------------------------------------------
// A small TOML reader: tables, arrays of tables, bare/quoted/dotted keys, strings, booleans,
// integers and floats, arrays and inline tables; enough for any registries.conf. Multi-line
// strings and dates are refused with the line, never misread.

type TomlValue = string | number | boolean | TomlValue[] | TomlTable;
interface TomlTable {
  [key: string]: TomlValue;
}

/** Tables without a prototype, so that a key named `__proto__` is only a key. */
function newTable(): TomlTable {
  return Object.create(null) as TomlTable;
}

function isTable(value: TomlValue | undefined): value is TomlTable {
  return typeof value === 'object' && !Array.isArray(value);
}

export function parseToml(text: string, file: string): TomlTable {
  return new TomlReader(text, file).document();
}

class TomlReader {
  readonly #text: string;
  readonly #file: string;
  #pos = 0;

  constructor(text: string, file: string) {
    this.#text = text;
    this.#file = file;
  }

  document(): TomlTable {
    const root = newTable();
    let table = root;
    for (;;) {
      this.#skip(true);
      if (this.#pos >= this.#text.length) return root;
      if (this.#text[this.#pos] === '[') table = this.#header(root);
      else this.#keyValue(table);
      this.#endOfLine();
    }
  }

  #error(message: string): CkptError {
    const line = this.#text.slice(0, this.#pos).split('\n').length;
    return new CkptError('INVALID_METADATA', `line ${line}: ${message}`, { subject: this.#file });
  }

  /** Skips spaces and comments, and newlines too where the grammar allows them. */
  #skip(newlines: boolean): void {
    const re = newlines ? /(?:[ \t\r\n]|#[^\n]*)*/y : /(?:[ \t]|#[^\n]*)*/y;
    re.lastIndex = this.#pos;
    re.exec(this.#text);
    this.#pos = re.lastIndex;
  }

  #endOfLine(): void {
    this.#skip(false);
    if (this.#pos < this.#text.length && !this.#eat('\n') && !this.#eat('\r\n')) throw this.#error('expected the end of the line');
  }

  #eat(token: string): boolean {
    if (!this.#text.startsWith(token, this.#pos)) return false;
    this.#pos += token.length;
    return true;
  }

  #expect(token: string): void {
    this.#skip(false);
    if (!this.#eat(token)) throw this.#error(`expected ${JSON.stringify(token)}`);
  }

  /** `[a.b]` opens a table; `[[a.b]]` appends one to an array of tables. */
  #header(root: TomlTable): TomlTable {
    const isArray = this.#eat('[[');
    if (!isArray) this.#eat('[');
    const path = this.#key();
    this.#expect(isArray ? ']]' : ']');
    const parent = this.#descend(root, path.slice(0, -1));
    const last = path[path.length - 1] ?? '';
    const existing = parent[last];
    if (isArray) {
      const table = newTable();
      if (existing === undefined) parent[last] = [table];
      else if (Array.isArray(existing)) existing.push(table);
      else throw this.#error(`${path.join('.')} is not an array of tables`);
      return table;
    }
    if (existing === undefined) return (parent[last] = newTable());
    if (isTable(existing)) return existing;
    throw this.#error(`${path.join('.')} is not a table`);
  }

  /** Walks to the table a dotted path names, creating tables; an array of tables means its last. */
  #descend(table: TomlTable, path: string[]): TomlTable {
    let current = table;
    for (const key of path) {
      const value = current[key] ?? (current[key] = newTable());
      const next = Array.isArray(value) ? value[value.length - 1] : value;
      if (!isTable(next)) throw this.#error(`${key} is not a table`);
      current = next;
    }
    return current;
  }

  #keyValue(table: TomlTable): void {
    const path = this.#key();
    this.#expect('=');
    this.#skip(false);
    const value = this.#value();
    const parent = this.#descend(table, path.slice(0, -1));
    const last = path[path.length - 1] ?? '';
    if (last in parent) throw this.#error(`${path.join('.')} is defined twice`);
    parent[last] = value;
  }

  /** A dotted key: bare (`A-Za-z0-9_-`) or quoted parts. */
  #key(): string[] {
    const parts: string[] = [];
    do {
      this.#skip(false);
      const quote = this.#text[this.#pos];
      if (quote === '"' || quote === "'") {
        parts.push(this.#string());
      } else {
        const bare = this.#match(/[A-Za-z0-9_-]+/y);
        if (bare === undefined) throw this.#error('expected a key');
        parts.push(bare);
      }
      this.#skip(false);
    } while (this.#eat('.'));
    return parts;
  }

  #match(re: RegExp): string | undefined {
    re.lastIndex = this.#pos;
    const found = re.exec(this.#text);
    if (found) this.#pos = re.lastIndex;
    return found?.[0];
  }

  #value(): TomlValue {
    const c = this.#text[this.#pos];
    if (c === '"' || c === "'") return this.#string();
    if (c === '[') return this.#array();
    if (c === '{') return this.#inlineTable();
    const word = this.#match(/(?:true|false|[+-]?\d[\d_]*(?:\.\d[\d_]*)?(?:[eE][+-]?\d+)?)(?=[ \t\r\n,\]}#]|$)/y);
    if (word === 'true' || word === 'false') return word === 'true';
    if (word !== undefined) return Number(word.replace(/_/g, ''));
    throw this.#error('unsupported or malformed value');
  }

  #string(): string {
    if (this.#text.startsWith('"""', this.#pos) || this.#text.startsWith("'''", this.#pos)) {
      throw this.#error('multi-line strings are not supported here');
    }
    if (this.#eat("'")) {
      const literal = this.#match(/[^'\n]*/y) ?? '';
      if (!this.#eat("'")) throw this.#error('unterminated string');
      return literal;
    }
    this.#eat('"');
    let out = '';
    for (;;) {
      const chunk = this.#match(/[^"\\\n]*/y) ?? '';
      out += chunk;
      if (this.#eat('"')) return out;
      if (!this.#eat('\\')) throw this.#error('unterminated string');
      out += this.#escape();
    }
  }

  #escape(): string {
    const simple: Record<string, string> = { b: '\b', t: '\t', n: '\n', f: '\f', r: '\r', '"': '"', '\\': '\\' };
    const c = this.#text[this.#pos] ?? '';
    if (c in simple) {
      this.#pos += 1;
      return simple[c] ?? '';
    }
    const hex = c === 'u' ? this.#match(/u[0-9A-Fa-f]{4}/y) : c === 'U' ? this.#match(/U[0-9A-Fa-f]{8}/y) : undefined;
    const code = hex === undefined ? NaN : parseInt(hex.slice(1), 16);
    if (!(code <= 0x10ffff) || (code >= 0xd800 && code <= 0xdfff)) throw this.#error('invalid escape in string');
    return String.fromCodePoint(code);
  }

  /** `[a, b, ]`, across lines, with comments. */
  #array(): TomlValue[] {
    this.#eat('[');
    const items: TomlValue[] = [];
    for (;;) {
      this.#skip(true);
      if (this.#eat(']')) return items;
      items.push(this.#value());
      this.#skip(true);
      if (this.#eat(']')) return items;
      if (!this.#eat(',')) throw this.#error('expected "," or "]" in array');
    }
  }

  /** `{ a = 1, b.c = "x" }`, on one line. */
  #inlineTable(): TomlTable {
    this.#eat('{');
    const table = newTable();
    this.#skip(false);
    if (this.#eat('}')) return table;
    for (;;) {
      this.#keyValue(table);
      this.#skip(false);
      if (this.#eat('}')) return table;
      if (!this.#eat(',')) throw this.#error('expected "," or "}" in inline table');
    }
  }
}
