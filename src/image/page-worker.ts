/**
 * Worker thread of `writePageLayer` and `PageLayerFeed` (page-layer.ts). It writes memory-pages
 * layers, one at a time, each in a plain loop: read into a reused buffer (or take the block the main thread fed), sha256
 * of the tar (the diff_id), zstd into the block handed over, sha256 of the blob. Streams would
 * allocate a fresh buffer per read and copy it again; on these sizes that costs more than the
 * hashing.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import zstd from 'zstd-napi/binding.js';
import { CkptError, fromSystemError } from '../errors.js';
import { errorToThread } from '../threads/errors.js';
import { TAR_END, tarPadding } from '../tar/ustar.js';
import { BLOCK_SIZE, type FromPageWorker, type PageLayerJob, type ToPageWorker } from './page-protocol.js';

/** Blocks the main thread has not taken yet. */
const WINDOW = 4;
const BLOCK = BLOCK_SIZE;

if (!parentPort) throw new Error('page-worker runs only as a worker thread');
const port = parentPort;

function post(message: FromPageWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

type Fed = Extract<ToPageWorker, { type: 'entry' | 'content' | 'end' }>;

/** What the main thread feeds a layer that is not read by offset, in order. */
class Feed {
  readonly #queue: Fed[] = [];
  #wake: (() => void) | undefined;

  push(message: Fed): void {
    this.#queue.push(message);
    this.#wake?.();
    this.#wake = undefined;
  }

  async next(): Promise<Fed> {
    for (;;) {
      const message = this.#queue.shift();
      if (message) return message;
      await new Promise<void>((ok) => (this.#wake = ok));
    }
  }
}

/** An unpooled block (a pooled one shares its memory and cannot be transferred), left unzeroed: zeroing fresh memory costs as much here as hashing it. */
function freshBlock(): Uint8Array<ArrayBuffer> {
  return new Uint8Array(Buffer.allocUnsafeSlow(BLOCK).buffer);
}

/**
 * Hands the layer to the main thread in fresh blocks it takes ownership of, a few at a time. zstd
 * and the file reads write straight into the block being filled: no copy on this side.
 */
/** Blocks the main thread sent back once copied: filled again, by this layer or the next, instead of fresh memory. */
const spareBlocks: ArrayBuffer[] = [];

class Output {
  readonly #hash = createHash('sha256');
  #size = 0;
  #block: Uint8Array<ArrayBuffer> = this.#nextBlock();
  #used = 0;
  #credits = WINDOW;
  #wake: (() => void) | undefined;

  /** A block's memory, sent back once copied. */
  spare(data: ArrayBuffer): void {
    spareBlocks.push(data);
  }

  /** The main thread took a block. */
  credit(): void {
    this.#credits++;
    this.#wake?.();
    this.#wake = undefined;
  }

  /** The free end of the current block, to write into and then `commit`. */
  space(): Uint8Array {
    return this.#block.subarray(this.#used);
  }

  async commit(length: number): Promise<void> {
    this.#hash.update(this.#block.subarray(this.#used, this.#used + length));
    this.#size += length;
    this.#used += length;
    if (this.#used === BLOCK) await this.#flush();
  }

  async write(bytes: Uint8Array): Promise<void> {
    for (let from = 0; from < bytes.length; ) {
      const space = this.space();
      const n = Math.min(bytes.length - from, space.length);
      space.set(bytes.subarray(from, from + n));
      from += n;
      await this.commit(n);
    }
  }

  async end(): Promise<{ digest: string; size: number }> {
    if (this.#used > 0) await this.#flush();
    // The block being filled holds nothing: it goes to the next layer.
    spareBlocks.push(this.#block.buffer);
    return { digest: `sha256:${this.#hash.digest('hex')}`, size: this.#size };
  }

  async #flush(): Promise<void> {
    while (this.#credits === 0) await new Promise<void>((ok) => (this.#wake = ok));
    this.#credits--;
    const data = this.#block.buffer;
    post({ type: 'chunk', data, length: this.#used }, [data]);
    this.#block = this.#nextBlock();
    this.#used = 0;
  }

  #nextBlock(): Uint8Array<ArrayBuffer> {
    const spare = spareBlocks.pop();
    return spare ? new Uint8Array(spare) : freshBlock();
  }
}

/** Where files read by offset land before zstd takes them, for every layer. */
const readBuffer = Buffer.allocUnsafeSlow(BLOCK);

/** zstd's context, kept from one layer to the next: its buffers are allocated and touched once. */
const cctx = new zstd.CCtx();

/** A zstd stream writing into the output's blocks. */
class Compressor {
  readonly #output: Output;

  constructor(job: PageLayerJob, output: Output) {
    this.#output = output;
    cctx.reset(zstd.ResetDirective.sessionAndParameters);
    cctx.setParameter(zstd.CParameter.compressionLevel, job.level);
    cctx.setParameter(zstd.CParameter.nbWorkers, job.threads);
    // The same parameters as the streaming compressor (compress/codec.ts): the same bytes out.
    if (job.threads > 0) cctx.setParameter(zstd.CParameter.jobSize, 2 << 20);
  }

  async write(input: Uint8Array, end = false): Promise<void> {
    const directive = end ? zstd.EndDirective.end : zstd.EndDirective.continue;
    for (let src = input; ; ) {
      const space = this.#output.space();
      const [remaining, produced, consumed] = cctx.compressStream2(space, src, directive);
      src = src.subarray(consumed);
      await this.#output.commit(produced);
      // Done when the input is taken and zstd had room to give all it had (at the end: all is out).
      if (src.length === 0 && (end ? remaining === 0 : produced < space.length)) return;
    }
  }
}

/** Reads `size` bytes at `offset` of `path`, a buffer at a time; nothing at all for none (a directory's entry). */
async function readRegion(
  path: string,
  offset: number,
  size: number,
  buffer: () => Uint8Array,
  use: (bytes: number) => Promise<void>,
): Promise<void> {
  if (size === 0) return;
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (err) {
    throw fromSystemError(err, path);
  }
  try {
    for (let done = 0; done < size; ) {
      const into = buffer();
      let n: number;
      try {
        n = readSync(fd, into, 0, Math.min(into.length, size - done), offset + done);
      } catch (err) {
        throw fromSystemError(err, path);
      }
      if (n === 0) throw new CkptError('READ_FAILED', `file shrank while it was read (${done} of ${size} bytes)`, { subject: path });
      await use(n);
      done += n;
    }
  } finally {
    closeSync(fd);
  }
}

async function run(job: PageLayerJob, output: Output, feed: Feed): Promise<void> {
  // Uncompressed, the blob is the tar: its digest is the diff_id, and file content is read
  // straight into the output. Compressed, the tar is hashed on its way into zstd.
  const zstdOut = job.compression === 'zstd' ? new Compressor(job, output) : undefined;
  const diff = zstdOut ? createHash('sha256') : undefined;
  const tar = async (bytes: Uint8Array, end = false): Promise<void> => {
    diff?.update(bytes);
    await (zstdOut ? zstdOut.write(bytes, end) : output.write(bytes));
  };
  if (job.entries) {
    for (const { header, path, offset, size } of job.entries) {
      await tar(header);
      if (zstdOut) await readRegion(path, offset, size, () => readBuffer, (n) => tar(readBuffer.subarray(0, n)));
      else await readRegion(path, offset, size, () => output.space(), (n) => output.commit(n));
      await tar(TAR_END.subarray(0, tarPadding(size)));
    }
  } else {
    // The main thread sends each file's exact size; anything else is a bug there, not bad input.
    const unexpected = (message: Fed) => new Error(`page worker: unexpected ${message.type} message`);
    for (let file = await feed.next(); file.type !== 'end'; file = await feed.next()) {
      if (file.type !== 'entry') throw unexpected(file);
      await tar(file.header);
      for (let left = file.size; left > 0; ) {
        const content = await feed.next();
        if (content.type !== 'content' || content.length > left) throw unexpected(content);
        await tar(new Uint8Array(content.data, 0, content.length));
        left -= content.length;
        post({ type: 'free', data: content.data }, [content.data]);
      }
      await tar(TAR_END.subarray(0, tarPadding(file.size)));
    }
  }
  await tar(TAR_END, true);
  const blob = await output.end();
  post({ type: 'done', ...blob, diffId: diff ? `sha256:${diff.digest('hex')}` : blob.digest });
}

// A worker may be started before its layer is known, and may write several in turn
// (threads/spares.ts): each `job` message starts one.
let job: { output: Output; feed: Feed } | undefined;
port.on('message', (message: ToPageWorker) => {
  if (message.type === 'job') {
    job = { output: new Output(), feed: new Feed() };
    run(message.job, job.output, job.feed).catch((err: unknown) => {
      post({ type: 'error', error: errorToThread(err) });
    });
  } else if (message.type === 'credit') job?.output.credit();
  else if (message.type === 'spare') job?.output.spare(message.data);
  else job?.feed.push(message);
});
