import { mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { CkptError, fromSystemError } from '../errors.js';
import { ownedName, removeOrphans } from '../fs/owned-names.js';
import { PRIVATE_DIR, PRIVATE_FILE } from '../fs/private-modes.js';

/**
 * The auth files that Podman, Skopeo and Docker share (containers-auth.json(5) and Docker's
 * config.json have one shape): where they live, how they are read, and the two edits that
 * `ckpt login` and `ckpt logout` make, as `podman login` / `podman logout` make them.
 */

export interface AuthFileOptions {
  /** An explicit auth file (`--authfile`). Like $REGISTRY_AUTH_FILE, it is then the only file used. */
  authFile?: string;
  /** Where REGISTRY_AUTH_FILE, XDG_RUNTIME_DIR, XDG_CONFIG_HOME and DOCKER_CONFIG are read; `process.env` by default. */
  env?: NodeJS.ProcessEnv;
  /** The user's home directory; `os.homedir()` by default. */
  home?: string;
}

/** Unknown fields are kept (`loose`), so that rewriting a file never drops what other tools put there. */
const AuthEntrySchema = z.looseObject({
  auth: z.string().optional(),
  identitytoken: z.string().optional(),
});
export type AuthEntry = z.infer<typeof AuthEntrySchema>;

const AuthFileSchema = z.looseObject({
  // A null entry (other tools write them) holds nothing; it is skipped, not a broken file.
  auths: z.record(z.string(), AuthEntrySchema.nullable()).nullish(),
  credHelpers: z.record(z.string(), z.string()).nullish(),
  credsStore: z.string().nullish(),
});
export type AuthFile = z.infer<typeof AuthFileSchema>;

function envOf(options: AuthFileOptions): NodeJS.ProcessEnv {
  return options.env ?? process.env;
}

/** The file named by `--authfile` or $REGISTRY_AUTH_FILE, if one is. */
export function explicitAuthFile(options: AuthFileOptions): string | undefined {
  return options.authFile || envOf(options).REGISTRY_AUTH_FILE || undefined;
}

/**
 * The containers auth file: the one `ckpt login` writes and the first one read. An explicit file,
 * else $REGISTRY_AUTH_FILE, else the session's runtime directory, else Podman's per-user fallback
 * under /run for processes that have no session (services, cron).
 */
export function containersAuthFile(options: AuthFileOptions = {}): string {
  const explicit = explicitAuthFile(options);
  if (explicit) return explicit;
  const runtimeDir = envOf(options).XDG_RUNTIME_DIR;
  if (runtimeDir) return join(runtimeDir, 'containers', 'auth.json');
  return join('/run/containers', String(process.getuid?.() ?? 0), 'auth.json');
}

/**
 * Every auth file to read, best first. An explicit file is read alone, as Podman and Skopeo do:
 * whoever names a file means that file. $DOCKER_CONFIG replaces ~/.docker, as it does for Docker.
 */
export function authFilePaths(options: AuthFileOptions = {}): string[] {
  if (explicitAuthFile(options)) return [containersAuthFile(options)];
  const env = envOf(options);
  const home = options.home ?? homedir();
  const configHome = env.XDG_CONFIG_HOME || join(home, '.config');
  const dockerDir = env.DOCKER_CONFIG || join(home, '.docker');
  return [containersAuthFile(options), join(configHome, 'containers', 'auth.json'), join(dockerDir, 'config.json')];
}

function isMissing(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** Reads and checks an auth file; undefined when it does not exist. */
export async function readAuthFile(file: string): Promise<AuthFile | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (isMissing(err)) return undefined;
    throw fromSystemError(err, file);
  }
  return parseAuthFile(text, file);
}

function parseAuthFile(text: string, file: string): AuthFile {
  // Docker reads an empty config.json as an empty configuration; so do we.
  if (text.trim() === '') return {};
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    // Neither the parser's message nor the error as cause: V8 quotes the text around the fault,
    // and that text may be a password.
    throw new CkptError('INVALID_METADATA', 'not valid JSON', { subject: file });
  }
  const result = AuthFileSchema.safeParse(value);
  if (!result.success) {
    // zod's messages name the expected type, never the value found.
    const issue = result.error.issues[0];
    const where = issue && issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new CkptError('INVALID_METADATA', `not an auth file${where}: ${issue?.message ?? 'invalid'}`, { subject: file });
  }
  return result.data;
}

/**
 * Checks a key as containers/image does: a registry (`host[:port]`) or a namespace in it
 * (`host/ns`, `host/ns/repo`), never a URL, a tag or a digest.
 */
function checkKey(key: string): void {
  const slash = key.indexOf('/');
  const bad =
    key === '' ||
    /^https?:\/\//.test(key) ||
    key.includes('@') ||
    (slash >= 0 && key.slice(slash + 1).includes(':')) ||
    /\s/.test(key);
  if (bad) {
    throw new CkptError('INVALID_REFERENCE', 'expected a registry (HOST[:PORT]) or a namespace in one (HOST/NAMESPACE)', {
      subject: key,
    });
  }
}

/**
 * A credential helper named for this key would shadow an `auths` entry on every read, so a
 * login written there would silently never be used.
 */
function refuseHelperKey(file: string, contents: AuthFile, key: string): void {
  const helper = contents.credHelpers?.[key];
  if (helper !== undefined) {
    throw new CkptError(
      'UNSUPPORTED',
      `credentials for ${key} are kept by docker-credential-${helper} (credHelpers); use that helper to change them`,
      { subject: file },
    );
  }
}

/**
 * Stores Basic credentials for a registry or namespace in the containers auth file, keeping every
 * other entry and field. Returns the file written.
 */
export async function storeCredential(
  registry: string,
  credential: { username: string; password: string },
  options: AuthFileOptions = {},
): Promise<string> {
  checkKey(registry);
  // The stored form is base64 of `user:pass`, split at the first colon when read back.
  if (credential.username === '' || credential.username.includes(':')) {
    throw new CkptError('USAGE', 'the user name must be non-empty and must not contain ":"');
  }
  if (credential.password === '') throw new CkptError('USAGE', 'the password must not be empty');
  const file = await writableAuthFile(options);
  const contents = (await readAuthFile(file)) ?? {};
  refuseHelperKey(file, contents, registry);
  const auth = Buffer.from(`${credential.username}:${credential.password}`).toString('base64');
  await writeAuthFile(file, { ...contents, auths: { ...contents.auths, [registry]: { auth } } });
  return file;
}

/**
 * Removes the entry for a registry or namespace from the containers auth file, keeping every other
 * entry. Returns false when there was none (`podman logout` then says "not logged in").
 */
export async function removeCredential(registry: string, options: AuthFileOptions = {}): Promise<boolean> {
  checkKey(registry);
  const file = containersAuthFile(options);
  // A killed login's copy goes even when it never reached the file: it holds the password.
  await removeOrphans(dirname(file), tempPrefix(file));
  const contents = await readAuthFile(file);
  if (!contents) return false;
  refuseHelperKey(file, contents, registry);
  if (!contents.auths || !Object.hasOwn(contents.auths, registry)) return false;
  const auths = Object.fromEntries(Object.entries(contents.auths).filter(([key]) => key !== registry));
  await writeAuthFile(file, { ...contents, auths });
  return true;
}

/**
 * The file to write, refusing to create a missing $XDG_RUNTIME_DIR: that directory belongs to the
 * login session (a tmpfs removed at logout); a missing one is a typo or a stale variable.
 */
async function writableAuthFile(options: AuthFileOptions): Promise<string> {
  const file = containersAuthFile(options);
  const runtimeDir = envOf(options).XDG_RUNTIME_DIR;
  if (!explicitAuthFile(options) && runtimeDir) {
    try {
      await stat(runtimeDir);
    } catch (err) {
      if (!isMissing(err)) throw fromSystemError(err, runtimeDir);
      throw new CkptError('WRITE_FAILED', 'the directory named by $XDG_RUNTIME_DIR does not exist; create it or unset XDG_RUNTIME_DIR', {
        subject: runtimeDir,
      });
    }
  }
  return file;
}

/** What names the copies writeAuthFile makes of `file` before renaming them over it. */
function tempPrefix(file: string): string {
  return `.${basename(file)}.`;
}

/**
 * Replaces the file atomically (a temporary file in the same directory, synced, then renamed), so
 * that a crash or a concurrent reader never sees half a file; readable by its owner only.
 */
async function writeAuthFile(file: string, contents: AuthFile): Promise<void> {
  const dir = dirname(file);
  const temp = join(dir, `${tempPrefix(file)}${ownedName()}`);
  try {
    await mkdir(dir, { recursive: true, mode: PRIVATE_DIR });
    // A killed login's copy holds every credential: the next write removes it.
    await removeOrphans(dir, tempPrefix(file));
    const handle = await open(temp, 'wx', PRIVATE_FILE);
    try {
      // The umask cannot widen the mode, but chmod makes it exactly 0600 whatever the umask.
      await handle.chmod(PRIVATE_FILE);
      await handle.writeFile(`${JSON.stringify(contents, null, '\t')}\n`);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await rm(temp, { force: true });
    throw fromSystemError(err, file, true);
  }
}
