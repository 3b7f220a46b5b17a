import type { Result } from 'execa';
import { z } from 'zod';
import { CkptError } from '../errors.js';
import { authFilePaths, explicitAuthFile, readAuthFile, type AuthEntry, type AuthFile, type AuthFileOptions } from './auth-file.js';

/**
 * Finds the credential a user already stored for a registry, where Podman, Skopeo and Docker keep
 * them (the auth files of auth-file.ts, and the `docker-credential-*` programs they name), matching
 * entries the way containers/image does so that whatever `podman login` or `docker login` wrote works.
 */

export interface Credential {
  username?: string;
  password?: string;
  /** An OAuth2 refresh token: exchange it at the token realm with a `refresh_token` grant. */
  identityToken?: string;
}

export interface CredentialOptions extends AuthFileOptions {
  /** The repository (`library/busybox`), so that entries scoped to it or its namespace apply. */
  repository?: string;
  /** Stops a credential helper that takes too long. */
  signal?: AbortSignal;
}

/** The key Docker files Docker Hub's credentials under, in `auths` and in helpers. */
const DOCKER_HUB_SERVER = 'https://index.docker.io/v1/';
/** What every Docker Hub host name and key normalises to, as containers/image does. */
const DOCKER_HUB_HOST = 'index.docker.io';

/**
 * The credential for `registry` (`HOST[:PORT]`, `docker.io` for Docker Hub), or undefined for
 * anonymous access. Files are read best first (see authFilePaths) and the first that yields a
 * credential wins; a missing file is skipped, a broken one is an error.
 */
export async function findCredential(registry: string, options: CredentialOptions = {}): Promise<Credential | undefined> {
  for (const file of authFilePaths(options)) {
    const contents = await readAuthFile(file);
    if (!contents && file === explicitAuthFile(options)) throw missingAuthFile(file);
    const found = contents && (await credentialInFile(contents, file, registry, options));
    if (found) return found;
  }
  return undefined;
}

/** A file named on purpose (--authfile, $REGISTRY_AUTH_FILE) that is not there is a mistake to report, as Podman does, not anonymous access. */
function missingAuthFile(file: string): CkptError {
  return new CkptError('NOT_FOUND', 'no such auth file (named by --authfile, the option authFile, or $REGISTRY_AUTH_FILE)', { subject: file });
}

/** Checks, before any request, that a named auth file exists (what findCredential reads once a registry asks). */
export async function assertAuthFile(options: AuthFileOptions): Promise<void> {
  const file = explicitAuthFile(options);
  if (file && !(await readAuthFile(file))) throw missingAuthFile(file);
}

/**
 * One file's answer. A helper named for the host is authoritative, as in Docker and
 * containers/image. Then the best `auths` entry; only then the default store (`credsStore`), which
 * Docker pairs with empty `auths` markers but which must not hide real entries beside it.
 */
async function credentialInFile(
  contents: AuthFile,
  file: string,
  registry: string,
  options: CredentialOptions,
): Promise<Credential | undefined> {
  const helper = helperFor(contents.credHelpers ?? {}, registry);
  if (helper) return runHelper(helper.name, helper.serverUrl, file, options);
  const entry = authEntryFor(contents.auths ?? {}, registry, options.repository);
  const fromEntry = entry && decodeEntry(entry);
  if (fromEntry) return fromEntry;
  if (contents.credsStore) return runHelper(contents.credsStore, helperServerUrl(registry), file, options);
  return undefined;
}

/** Docker Hub has three host names; auth files use any of them. */
function normalizeHost(host: string): string {
  return host === 'docker.io' || host === 'registry-1.docker.io' ? DOCKER_HUB_HOST : host;
}

/** The host an auth-file key names: URL keys (`https://host/v1/`, from old Docker logins) lose scheme and path. */
function keyHost(key: string): string {
  const stripped = key.replace(/^https?:\/\//, '');
  return normalizeHost(stripped === key ? key : (stripped.split('/')[0] ?? ''));
}

/**
 * The `auths` entry for a repository, as containers/image chooses it: exact keys from the most
 * specific (`host/ns/repo`, `host/ns`) to the host itself, then any key naming the same host in
 * another spelling (`https://host`, `http://host/v1/`, Docker Hub's aliases).
 */
function authEntryFor(auths: Record<string, AuthEntry | null>, registry: string, repository?: string): AuthEntry | undefined {
  for (const key of scopedKeys(registry, repository)) {
    const entry = Object.hasOwn(auths, key) ? auths[key] : undefined;
    if (entry) return entry;
  }
  const host = normalizeHost(registry);
  const alias = Object.keys(auths).find((key) => keyHost(key) === host && auths[key]);
  return alias === undefined ? undefined : (auths[alias] ?? undefined);
}

/** `host/a/b/c`, `host/a/b`, `host/a`, `host`. */
function scopedKeys(registry: string, repository?: string): string[] {
  const keys = [registry];
  for (const part of repository ? repository.split('/') : []) keys.unshift(`${keys[0]}/${part}`);
  return keys;
}

/**
 * A credential from an entry, or undefined for an entry that holds none: Docker writes empty
 * entries as markers when a helper keeps the secret, and containers/image skips malformed ones.
 */
function decodeEntry(entry: AuthEntry): Credential | undefined {
  const decoded = entry.auth ? Buffer.from(entry.auth, 'base64').toString('utf8') : '';
  const colon = decoded.indexOf(':');
  const credential: Credential = {};
  if (colon > 0) {
    credential.username = decoded.slice(0, colon);
    // Some writers pad the password with NULs; containers/image trims them too.
    const password = decoded.slice(colon + 1).replace(/^\0+|\0+$/g, '');
    if (password) credential.password = password;
  }
  if (entry.identitytoken) credential.identityToken = entry.identitytoken;
  return credential.password || credential.identityToken ? credential : undefined;
}

/**
 * The helper a `credHelpers` map names for the host: its exact key first, else a key naming the
 * same host in another spelling (Docker files Docker Hub's under its v1 URL or `index.docker.io`).
 */
function helperFor(helpers: Record<string, string>, registry: string): { name: string; serverUrl: string } | undefined {
  const host = normalizeHost(registry);
  const key = Object.hasOwn(helpers, registry) ? registry : Object.keys(helpers).find((k) => keyHost(k) === host);
  const name = key === undefined ? undefined : helpers[key];
  return name === undefined ? undefined : { name, serverUrl: helperServerUrl(registry, key) };
}

/**
 * The server URL a helper holds the credential under. Docker stores Docker Hub's under its v1 URL;
 * Podman under the name it was given, which the `docker.io` key betrays.
 */
function helperServerUrl(registry: string, key?: string): string {
  if (normalizeHost(registry) !== DOCKER_HUB_HOST) return registry;
  return key === 'docker.io' ? key : DOCKER_HUB_SERVER;
}

/** A name that cannot turn `docker-credential-NAME` into a path elsewhere. */
const HELPER_NAME_RE = /^[\w][\w.-]*$/;
/** What docker-credential-helpers print (on stdout, exiting 1) when they hold nothing for the server. */
const NOT_FOUND_RE = /credentials not found/i;

const HelperReplySchema = z.object({
  ServerURL: z.string().optional(),
  Username: z.string(),
  Secret: z.string(),
});

/** The docker-credential-helpers protocol: `get`, the server URL on stdin, JSON on stdout. */
async function runHelper(name: string, serverUrl: string, file: string, { env, signal }: CredentialOptions): Promise<Credential | undefined> {
  if (!HELPER_NAME_RE.test(name)) {
    throw new CkptError('INVALID_METADATA', `invalid credential helper name ${JSON.stringify(name)}`, { subject: file });
  }
  const program = `docker-credential-${name}`;
  // Loaded here: most registries need no helper, and every command would pay for execa's start-up.
  const { execa } = await import('execa');
  // cleanup: a library must not install signal handlers in its caller's process; the signal ends it.
  const result = await execa(program, ['get'], { input: serverUrl, env: env ?? process.env, extendEnv: false, reject: false, cancelSignal: signal, cleanup: false });
  if (result.isCanceled) throw new CkptError('ABORTED', `credential helper ${program} stopped: ${signal?.reason instanceof Error ? signal.reason.message : 'aborted'}`, { subject: file });
  if (result.failed) {
    if (NOT_FOUND_RE.test(`${result.stdout}\n${result.stderr}`)) return undefined;
    throw helperFailure(program, file, result);
  }
  return parseHelperReply(result.stdout, program, file);
}

function parseHelperReply(stdout: string, program: string, file: string): Credential | undefined {
  let reply: z.infer<typeof HelperReplySchema> | undefined;
  try {
    reply = HelperReplySchema.parse(JSON.parse(stdout));
  } catch {
    // The output may hold the secret: say only that it was unreadable.
    throw new CkptError('UNAUTHORIZED', `${program} answered something other than credentials`, { subject: file });
  }
  if (!reply.Secret) return undefined;
  // The helpers' convention for an identity token, which has no user name.
  if (reply.Username === '<token>') return { identityToken: reply.Secret };
  return { username: reply.Username, password: reply.Secret };
}

/** A failed helper, described by its first line of complaint (errors, never the secret it holds). */
function helperFailure(program: string, file: string, result: Result): CkptError {
  if (result.code === 'ENOENT') {
    return new CkptError('UNAUTHORIZED', `credential helper ${program} is not installed (or not on PATH)`, { subject: file });
  }
  const said = firstLine(String(result.stdout ?? '')) || firstLine(String(result.stderr ?? ''));
  const how = result.exitCode === undefined ? 'could not run' : `failed (exit code ${result.exitCode})`;
  return new CkptError('UNAUTHORIZED', `credential helper ${program} ${how}${said ? `: ${said}` : ''}`, { subject: file });
}

function firstLine(text: string): string {
  const line = text.split('\n').find((l) => l.trim() !== '') ?? '';
  return line.trim().slice(0, 200);
}
