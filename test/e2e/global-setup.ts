// Builds (or finds) the cached Debian 13 root once, before any end-to-end file runs, so that its
// time shows up separately and no test's hook has to wait for debootstrap.
import { ensureRoot } from './harness.js';

export default async function setup(): Promise<void> {
  const started = Date.now();
  const root = await ensureRoot();
  const s = ((Date.now() - started) / 1000).toFixed(1);
  process.stderr.write(`e2e: Debian 13 root ${root} ready in ${s} s\n`);
}
