import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { Command, CommanderError } from 'commander';
import { CkptError, ExitCode, isCkptError } from '../errors.js';
import { reportError } from './errors.js';
import { registerBuild } from './commands/build.js';
import { registerCopy } from './commands/copy.js';
import { registerInspect } from './commands/inspect.js';
import { registerLogin } from './commands/login.js';
import { registerPull } from './commands/pull.js';
import { registerPush } from './commands/push.js';

const EXIT_CODES_HELP = `
Exit codes:
  0    success
  1    unexpected failure
  2    usage: bad option, argument or reference
  3    bad input: not a checkpoint, corrupt or unsafe archive, broken metadata, unsupported format
  4    not found: file, layout, tag, repository or blob
  5    authentication failed or access denied
  6    network or registry failure (after retries)
  7    integrity: content does not match its digest or size
  8    local file failed: disk full, permission, a file that changed while read, destination in the way
  130  interrupted`;

// undici parses HTTP with a WebAssembly module that V8 recompiles in the background once it runs
// hot, and Node waits for that compilation before it exits: ~0.3 s on every short command, such as a
// re-push that sends nothing. The baseline compiler alone parses fast enough for our traffic.
// Node calls setting V8 flags after start-up undefined behaviour in general; this one is read when
// a WebAssembly module is compiled, which undici does at the first request, after this line.
setFlagsFromString('--liftoff-only');

/**
 * The installed package's version, from its package.json two directories up (from dist/cli/, as
 * tsc and the bundle both put this module): not npm's npm_package_version, which under `npx` or
 * `npm run` is the version of the project ckpt runs in.
 */
function packageVersion(): string {
  try {
    const { version } = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
    return typeof version === 'string' ? version : 'unknown';
  } catch {
    return 'unknown';
  }
}

export function program(signal: AbortSignal): Command {
  const cli = new Command('ckpt')
    .description('Turn CRIU container checkpoints into OCI images, and back.')
    .version(packageVersion())
    .addHelpText('after', EXIT_CODES_HELP)
    .exitOverride()
    // Commander's complaints are reported as every failure is, in one line (usageError).
    .configureOutput({ writeErr: (s) => process.stderr.write(s), outputError: () => undefined });
  registerBuild(cli, signal);
  registerPush(cli, signal);
  registerPull(cli, signal);
  registerCopy(cli, signal);
  registerInspect(cli, signal);
  registerLogin(cli, signal);
  for (const command of cli.commands) command.exitOverride().addHelpText('after', EXIT_CODES_HELP);
  return cli;
}

/**
 * A reader that goes away (`ckpt inspect ... | head`) is not a failure of the command: what it
 * would have printed is dropped and the command ends with its own exit code. Without a listener,
 * Node ends the process on the pipe's EPIPE with a stack trace, mid-push if it comes then.
 */
function dropOutputToClosedPipe(stream: NodeJS.WriteStream): void {
  stream.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
  });
}

/** Commander's own output, already printed: help (asked for, or after no command) and the version. */
const PRINTED = new Set(['commander.help', 'commander.helpDisplayed', 'commander.version']);

/** A complaint of Commander's, naming the command it is about (the first word that is not an option). */
function usageError(err: CommanderError, cli: Command, argv: string[]): CkptError {
  const first = argv.find((arg) => !arg.startsWith('-'));
  const command = cli.commands.find((c) => c.name() === first)?.name();
  // Commander quotes a token it refused whole: `--creds=USER:PASSWORD` given where no --creds is,
  // or `-pPASSWORD`, must not print the password, so only the option's name is kept, as pflag does.
  const refused = err.code === 'commander.unknownOption' ? /^error: unknown option '(.*)'(.*)$/s.exec(err.message) : null;
  const token = refused?.[1] ?? '';
  const what = refused
    ? `unknown option '${token.startsWith('--') ? token.split('=')[0] : token.slice(0, 2)}'${refused[2] ?? ''}`
    : err.message.replace(/^error: /, '');
  return new CkptError('USAGE', `${what} (see ckpt ${command ? `${command} ` : ''}--help)`, { subject: command });
}

/** An abort that a signal caused says which, not the library's "operation aborted". */
function interrupted(err: unknown, signal: AbortSignal): unknown {
  if (!isCkptError(err, 'ABORTED') || typeof signal.reason !== 'string') return err;
  return new CkptError('ABORTED', `interrupted (${signal.reason})`, { subject: err.subject, cause: err });
}

/** The command has ended: its exit code is known. */
let settled = false;
/** A second signal gave up on the command: the process ends by that signal. */
let gaveUp = false;

/** Runs the CLI and resolves to the exit code; the binary exits with it. */
export async function run(argv: string[]): Promise<number> {
  const controller = new AbortController();
  // Every concurrent request and stream listens to this one signal; dozens at once are normal.
  setMaxListeners(256, controller.signal);
  // The first signal stops the command and removes what it wrote; a second one, for a command that
  // does not stop, ends the process at once by that signal's default action (what it leaves, the
  // next ckpt removes). Not process.exit(): it waits for libuv's threads, one of which may be the
  // very thing stuck (an open() of a FIFO no one writes).
  const onSignal = (name: NodeJS.Signals) => {
    // Between the result and the exit the command is done: its exit code stands, the process goes.
    // Without these handlers, one more signal ends it even if exit() waits on a stuck libuv thread.
    if (settled) {
      for (const other of signals) process.removeAllListeners(other);
      process.exit();
    }
    if (gaveUp) return;
    if (!controller.signal.aborted) {
      controller.abort(name);
      return;
    }
    gaveUp = true;
    process.stderr.write('ckpt: interrupted again: stopped at once, without cleaning up\n');
    process.removeAllListeners(name);
    // Once the handler is gone, a turn later: raised now, it would still reach this one.
    setImmediate(() => process.kill(process.pid, name));
  };
  // SIGHUP too: a closed terminal or a dropped SSH session must clean up as Ctrl-C does.
  const signals = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
  // Kept for the whole command (not once): a library's handler (execa's signal-exit) must not
  // think it is alone and raise the signal again before the cleanup. Kept after it too, until the
  // process exits: a signal then must not turn a success into death by that signal.
  for (const name of signals) process.on(name, onSignal);
  dropOutputToClosedPipe(process.stdout);
  dropOutputToClosedPipe(process.stderr);
  const cli = program(controller.signal);
  try {
    await cli.parseAsync(argv, { from: 'user' });
    return ExitCode.ok;
  } catch (err) {
    if (err instanceof CommanderError && PRINTED.has(err.code)) return err.exitCode === 0 ? ExitCode.ok : ExitCode.usage;
    const failure = err instanceof CommanderError && err.exitCode !== 0 ? usageError(err, cli, argv) : err;
    return reportError(interrupted(failure, controller.signal), (line) => process.stderr.write(`${line}\n`));
  }
}

// Should the event loop run dry with the command unsettled (a bug), the exit says so, not success.
// Set only then: Commander's help takes a process.exitCode already set as its own.
process.once('exit', () => {
  if (settled || gaveUp) return;
  process.stderr.write('ckpt: the command stopped before it finished (a bug: please report it)\n');
  process.exitCode = ExitCode.failure;
});
run(process.argv.slice(2)).then((code) => {
  settled = true;
  process.exitCode = code;
});
