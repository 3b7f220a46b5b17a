import { readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { execa } from 'execa';
import { describe, expect, it } from 'vitest';
import { withLockFile } from '../../src/layout/lock-file.js';
import { tempDir } from '../helpers/tree.js';

describe('a lock file', () => {
  it('left behind by a process that is gone is taken over by one waiter at a time, never by two (12 waiters, 40 times)', async () => {
    const gone = execa('true');
    await gone;
    for (let round = 0; round < 40; round++) {
      const lock = join(await tempDir('ckpt-lock-'), 'index.json.lock');
      await writeFile(lock, `${gone.pid}\n`);
      let inside = 0;
      let most = 0;
      await Promise.all(
        Array.from({ length: 12 }, () =>
          withLockFile(lock, async () => {
            most = Math.max(most, ++inside);
            await sleep(5);
            inside--;
          }),
        ),
      );
      expect(most, `round ${round}`).toBe(1);
    }
  });

  it('is taken over even when a process died while taking it over, and no guard is left', async () => {
    const gone = execa('true');
    await gone;
    const dir = await tempDir('ckpt-lock-');
    const lock = join(dir, 'index.json.lock');
    await writeFile(lock, `${gone.pid}\n`);
    await writeFile(`${lock}.takeover`, `${gone.pid}\n`);
    const started = Date.now();
    expect(await withLockFile(lock, () => Promise.resolve('ran'))).toBe('ran');
    expect(Date.now() - started).toBeLessThan(5000);
    expect(await readdir(dir)).toEqual([]);
  });

  it('is released only if it is still this one: a lock another process made since is left', async () => {
    const lock = join(await tempDir('ckpt-lock-'), 'index.json.lock');
    await withLockFile(lock, async () => {
      // As when the layout was moved aside under the lock and another process made a new one.
      await rm(lock);
      await writeFile(lock, 'theirs\n');
    });
    expect(await readFile(lock, 'utf8')).toBe('theirs\n');
  });
});
