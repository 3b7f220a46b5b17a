import type { Command } from 'commander';
import { CkptError } from '../../errors.js';
import { canPrompt, prompt } from '../prompt.js';
import { type RegistryFlags, addRegistryFlags, registryAccess } from '../registry-flags.js';

export function registerLogin(cli: Command, signal: AbortSignal): void {
  const login = cli
    .command('login')
    .description('Check credentials against a registry and store them in the containers auth file (like podman login)')
    .argument('<registry>', 'HOST[:PORT], a name alone, a URL, or HOST/NAMESPACE (for that namespace only, as podman login)');
  addRegistryFlags(login, true);
  // The shared flag reads credentials; here it names the file they are stored in.
  const authfile = login.options.find((option) => option.long === '--authfile');
  if (authfile) authfile.description = 'auth file to store the credentials in (created if missing)';
  login.action(async (registry: string, flags: RegistryFlags) => {
    const commands = await import('../../commands/login.js');
    const { credentials: given, ...access } = await registryAccess(flags, signal);
    // As podman login: on a terminal, what was not given is asked, the password without echo.
    const credentials =
      given ?? (canPrompt() ? { username: await prompt('Username: ', false, signal), password: await prompt('Password: ', true, signal) } : undefined);
    if (!credentials) throw new CkptError('USAGE', 'login needs --username with --password-stdin, or --creds, where standard input is not a terminal');
    const file = await commands.login(registry, { ...access, ...credentials, authFile: flags.authfile, signal });
    process.stderr.write(`Login succeeded; credentials stored in ${file}\n`);
  });

  cli
    .command('logout')
    .description('Remove the stored credentials of a registry from the containers auth file')
    .argument('<registry>', 'HOST[:PORT], a name alone, a URL, or HOST/NAMESPACE (that entry only)')
    .option('--authfile <file>', 'auth file to change (also $REGISTRY_AUTH_FILE)')
    .action(async (registry: string, flags: { authfile?: string }) => {
      const { logout, authKey } = await import('../../commands/login.js');
      const removed = await logout(registry, { authFile: flags.authfile ?? process.env.REGISTRY_AUTH_FILE });
      if (!removed) throw new CkptError('NOT_FOUND', 'not logged in', { subject: authKey(registry) });
      process.stderr.write(`Removed login credentials for ${authKey(registry)}\n`);
    });
}
