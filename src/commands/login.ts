import { CkptError } from '../errors.js';
import { parseRegistryHost, parseRegistryReference } from '../reference.js';
import { type AuthFileOptions, removeCredential, storeCredential } from '../registry/auth-file.js';
import { RegistryClient } from '../registry/client.js';
import { type RegistryAccess, registryOptions } from '../target/open.js';
import { runCommand } from './run-command.js';

export interface LoginOptions extends Omit<RegistryAccess, 'credentials' | 'authFile'>, AuthFileOptions {
  username: string;
  password: string;
  signal?: AbortSignal;
}

/** The registry of a full reference (`host/repo:tag`), else the host named alone (parseRegistryHost). */
export function registryOf(input: string): string {
  const path = input.replace(/^https?:\/\//, '').replace(/\/+$/, '');
  return path.includes('/') ? parseRegistryReference(path).registry : parseRegistryHost(path);
}

/**
 * Checks the credentials against the registry, then stores them in the containers auth file (as
 * `podman login` does); returns the file written. Nothing is stored when the registry refuses them.
 */
export function login(registryInput: string, options: LoginOptions): Promise<string> {
  return runCommand('command', { registry: registryInput }, options, (checked) => loginChecked(registryInput, checked));
}

async function loginChecked(registryInput: string, options: LoginOptions): Promise<string> {
  const registry = registryOf(registryInput);
  if (!options.username || !options.password) {
    throw new CkptError('USAGE', 'login needs a user name and a password', { subject: registry });
  }
  const credentials = { username: options.username, password: options.password };
  const client = new RegistryClient(registry, registryOptions({ ...options, credentials }));
  try {
    await client.send({ method: 'GET', url: '/v2/', scopes: [], expect: [200], subject: registry, signal: options.signal }).then((res) => res.body.dump());
  } finally {
    await client.close();
  }
  return storeCredential(registry, credentials, options);
}

/** Removes the registry's entry from the containers auth file; false when there was none. */
export function logout(registryInput: string, options: AuthFileOptions = {}): Promise<boolean> {
  return runCommand('command', { registry: registryInput }, options, (checked) => logoutChecked(registryInput, checked));
}

async function logoutChecked(registryInput: string, options: AuthFileOptions): Promise<boolean> {
  return removeCredential(registryOf(registryInput), options);
}
