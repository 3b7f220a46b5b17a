import { CkptError } from '../errors.js';

/** Where a checkpoint tree holds CRIU's inventory, which makes it a checkpoint (as interpretScan reads it). */
const INVENTORY_PATHS = ['checkpoint/inventory.img', 'inventory.img'];

/** Refuses an unpacked tree that is not a checkpoint (a plain image), before it reaches its destination. */
export async function assertHoldsCheckpoint(hasFile: (path: string) => boolean | Promise<boolean>, image: string): Promise<void> {
  for (const path of INVENTORY_PATHS) if (await hasFile(path)) return;
  throw new CkptError('NOT_CHECKPOINT', 'not a checkpoint image: its layers hold no CRIU inventory.img', { subject: image });
}
