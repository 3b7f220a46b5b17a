import { CkptError } from '../errors.js';
import { parseRegistryHost, refuseCredentialsIn } from '../reference.js';
import { type AuthFileOptions, removeCredential, storeCredential } from '../registry/auth-file.js';
import { RegistryClient } from '../registry/client.js';
import { REGISTRY_ACCESS_NAMES, type RegistryAccess, registryOptions } from '../target/open.js';
import { type OptionsSpec, optionNames, runCommand } from './run-command.js';

export interface LoginOptions extends Omit<RegistryAccess, 'credentials' | 'authFile'>, AuthFileOptions {
  username: string;
  password: string;
  signal?: AbortSignal;
}

const { credentials: _credentials, ...REGISTRY_ACCESS_BUT_CREDENTIALS } = REGISTRY_ACCESS_NAMES;
const AUTH_FILE_NAMES = { authFile: true, env: true, home: true } as const;

const LOGIN_OPTIONS: OptionsSpec = {
  kind: 'command',
  names: optionNames<LoginOptions>({ ...REGISTRY_ACCESS_BUT_CREDENTIALS, ...AUTH_FILE_NAMES, username: true, password: true, signal: true }),
};

export interface LogoutOptions extends AuthFileOptions {
  signal?: AbortSignal;
}

const LOGOUT_OPTIONS: OptionsSpec = { kind: 'command', names: optionNames<LogoutOptions>({ ...AUTH_FILE_NAMES, signal: true }) };

/**
 * The auth-file key `input` names, as `podman login` takes it: a registry (HOST[:PORT], a name
 * alone, a URL), or a namespace in one (HOST/NAMESPACE), whose entry then wins over the host's
 * for the repositories below it. A tag or digest has no place in it (storeCredential refuses it).
 */
export function authKey(input: string): string {
  refuseCredentialsIn(input, 'give them with --creds or --password-stdin (the options username and password)', false);
  const url = /^https?:\/\//.test(input);
  const path = input.replace(/^https?:\/\//, '').replace(/\/+$/, '');
  const slash = path.indexOf('/');
  const host = slash < 0 ? path : path.slice(0, slash);
  // A URL names a registry, whatever its path (Docker's https://index.docker.io/v1/).
  if (slash < 0 || url) return parseRegistryHost(host);
  const namespace = path.slice(slash + 1);
  if (!NAMESPACE_RE.test(namespace)) {
    throw new CkptError('INVALID_REFERENCE', 'a namespace is lower-case path components (a-z, 0-9, and . _ - between them)', { subject: input });
  }
  return `${parseRegistryHost(host)}/${namespace}`;
}

/** Repository path components, as the distribution spec has them. */
const NAMESPACE_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

/**
 * Checks the credentials against the registry, then stores them in the containers auth file (as
 * `podman login` does); returns the file written. Nothing is stored when the registry refuses them.
 */
export function login(registryInput: string, options: LoginOptions): Promise<string> {
  return runCommand(LOGIN_OPTIONS, { registry: registryInput }, options, (checked) => loginChecked(registryInput, checked));
}

async function loginChecked(registryInput: string, options: LoginOptions): Promise<string> {
  const key = authKey(registryInput);
  const [registry = key, ...namespace] = key.split('/');
  if (!options.username || !options.password) {
    throw new CkptError('USAGE', 'login needs a user name and a password', { subject: key });
  }
  const credentials = { username: options.username, password: options.password };
  // registries.conf entries for the namespace apply to its check too.
  const client = new RegistryClient(registry, registryOptions({ ...options, credentials }, namespace.join('/') || undefined));
  try {
    await client.send({ method: 'GET', url: '/v2/', scopes: [], expect: [200], subject: registry, signal: options.signal }).then((res) => res.body.dump());
  } finally {
    await client.close();
  }
  return storeCredential(key, credentials, options);
}

/** Removes the entry of the registry or namespace (authKey) from the containers auth file; false when there was none. */
export function logout(registryInput: string, options: LogoutOptions = {}): Promise<boolean> {
  return runCommand(LOGOUT_OPTIONS, { registry: registryInput }, options, (checked) => logoutChecked(registryInput, checked));
}

async function logoutChecked(registryInput: string, options: LogoutOptions): Promise<boolean> {
  return removeCredential(authKey(registryInput), options);
}
