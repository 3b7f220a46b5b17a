import { type Command, InvalidArgumentError, Option } from 'commander';
import { CkptError } from '../errors.js';
import type { RegistryAccess } from '../target/open.js';
import { canPrompt, prompt } from './prompt.js';

/** Flags for reaching a registry, built once and added to every command that talks to one. */
export interface RegistryFlags {
  creds?: string;
  username?: string;
  passwordStdin?: boolean;
  authfile?: string;
  caFile?: string[];
  plainHttp?: boolean;
  tlsVerify?: boolean;
}

function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}

function bool(value: string): boolean {
  if (value === 'true') return true;
  if (value === 'false') return false;
  throw new InvalidArgumentError('expected true or false');
}

/** `readsOnly`: the command writes to no registry (inspect, pull), so --creds has no second one to keep away from. */
export function addRegistryFlags(command: Command, readsOnly = false): Command {
  const creds = 'registry credentials (instead of those stored by login, Podman or Docker)';
  return command
    .option('--creds <user[:password]>', `${readsOnly ? creds : `${creds}; reading one registry and writing another, only the one written to gets them`}; without the password, it is asked on the terminal`)
    .option('-u, --username <user>', 'registry user name; the password comes from --password-stdin, or is asked on the terminal')
    .option('--password-stdin', 'read the registry password from standard input')
    .addOption(new Option('--authfile <file>', 'auth file to read credentials from').env('REGISTRY_AUTH_FILE'))
    .option('--ca-file <file>', 'extra CA certificate to trust (repeatable)', collect)
    .option('--plain-http', 'talk plain HTTP to the registry (loopback hosts and registries.conf insecure entries may anyway)')
    .option('--tls-verify <bool>', 'verify TLS certificates', bool, true);
}

/** The password on stdin, to its end; Ctrl-C stops the wait (a terminal, a pipe no one closes). */
async function readStdin(signal: AbortSignal): Promise<string> {
  const chunks: Buffer[] = [];
  const stop = () => process.stdin.destroy();
  // A Ctrl-C while the command's code loaded came before this listener.
  if (signal.aborted) stop();
  signal.addEventListener('abort', stop, { once: true });
  try {
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  } catch (err) {
    if (!signal.aborted) throw err;
  } finally {
    signal.removeEventListener('abort', stop);
  }
  if (signal.aborted) throw new CkptError('ABORTED', 'operation aborted', { subject: '--password-stdin', cause: signal.reason });
  return Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
}

/** Turns the flags into the library's options; conflicting flags are refused with a sentence. */
export async function registryAccess(flags: RegistryFlags, signal: AbortSignal, question = 'Password: '): Promise<RegistryAccess> {
  if (flags.creds && (flags.username || flags.passwordStdin)) {
    throw new CkptError('USAGE', '--creds and --username/--password-stdin cannot be used together');
  }
  let credentials: RegistryAccess['credentials'];
  // A password asked on the terminal, without echo, stays out of argv and the shell's history.
  const askPassword = () => prompt(question, true, signal);
  if (flags.creds) {
    const colon = flags.creds.indexOf(':');
    if (colon === 0 || (colon < 0 && !canPrompt())) throw new CkptError('USAGE', '--creds takes USER:PASSWORD (USER alone asks for the password on a terminal)');
    credentials =
      colon < 0 ? { username: flags.creds, password: await askPassword() } : { username: flags.creds.slice(0, colon), password: flags.creds.slice(colon + 1) };
  } else if (flags.username || flags.passwordStdin) {
    if (!flags.username) throw new CkptError('USAGE', '--password-stdin goes with --username');
    if (!flags.passwordStdin && !canPrompt()) throw new CkptError('USAGE', '--username goes with --password-stdin where standard input is not a terminal');
    credentials = { username: flags.username, password: flags.passwordStdin ? await readStdin(signal) : await askPassword() };
  }
  return {
    credentials,
    authFile: flags.authfile,
    caFiles: flags.caFile,
    plainHttp: flags.plainHttp,
    tlsVerify: flags.tlsVerify,
  };
}
