import { mkdir } from 'node:fs/promises';

/**
 * Makes `dir` (not its parents) and runs `create`, which makes something in it. Another process
 * removes such a directory once it has emptied it, which may fall between the two: then both run
 * again. A parent that is gone fails with ENOENT.
 */
export async function inVanishingDir<T>(dir: string, create: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    await mkdir(dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'EEXIST') throw err;
    });
    try {
      return await create();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || attempt === 10) throw err;
    }
  }
}
