import { pack, type Header } from 'tar-stream';

/** One entry of a hand-made archive; `body` is the content of a file. */
export type TarSpec = Partial<Header> & { name: string; body?: string | Buffer };

/** A tar archive built in memory, exactly as a hostile (or a well-behaved) layer would carry it. */
export async function tarOf(entries: TarSpec[]): Promise<Buffer> {
  const p = pack();
  const chunks: Buffer[] = [];
  const collected = (async () => {
    for await (const chunk of p) chunks.push(chunk as Buffer);
  })();
  for (const { body, ...header } of entries) {
    await new Promise<void>((ok, fail) => {
      const done = (err?: Error | null) => (err ? fail(err) : ok());
      // Entries without content (directories, links, devices) end themselves.
      if (body !== undefined) p.entry({ mtime: new Date(0), ...header }, body, done);
      else p.entry({ mtime: new Date(0), ...header }, done);
    });
  }
  p.finalize();
  await collected;
  return Buffer.concat(chunks);
}
