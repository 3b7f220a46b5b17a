import { randomUUID } from 'node:crypto';
import { execa } from 'execa';
import { HOLDER } from '../../src/fs/owned-names.js';

/** The `<pid>@<pid namespace>` of a process that has exited, as what it left behind would name it. */
export async function exitedHolder(): Promise<string> {
  const exited = execa('true');
  await exited;
  const namespace = HOLDER.includes('@') ? `@${HOLDER.split('@')[1]}` : '';
  return `${exited.pid ?? 0}${namespace}`;
}

/** A name ckpt gives what it writes (ownedName), as a process that has exited would have left it. */
export async function leftByExited(): Promise<string> {
  return `${await exitedHolder()}.${randomUUID()}`;
}
