/**
 * Worker thread of `ZstdLayerThread` (zstd-thread.ts). It reads one zstd layer in a plain loop:
 * zstd into one reused buffer, the tar cut into headers and content in place (tar-framer.ts), each
 * header decoded with tar-stream and checked as readTar() checks it, and each file's content
 * written from that same buffer into the file the main thread opened for it. Streams would
 * allocate a fresh buffer per chunk and copy it on, and on this scale fresh memory costs more
 * than zstd itself. The main thread keeps every decision about the file system. The worker also
 * hashes the compressed bytes as they arrive and checks the blob's digest before it says the layer
 * ended, which spares the main thread, the busiest on a pull, a second pass over them.
 */
import { writeSync } from 'node:fs';
import { parentPort } from 'node:worker_threads';
import zstd from 'zstd-napi/binding.js';
import { digestMismatch } from '../content/verify.js';
import { CkptError } from '../errors.js';
import { hasherFor } from '../oci/digest.js';
import { corruptArchive, treeEntry } from '../tar/read.js';
import { errorToThread } from '../threads/errors.js';
import { decodeHeader, type Frame, TarFramer } from './tar-framer.js';
import type { ContentTarget, FromZstdWorker, ToZstdWorker } from './zstd-protocol.js';

/** Bytes zstd writes at once, and so at most one write(2) of file content. */
const OUTPUT = 1 << 20;
/** Content chunks handed to the main thread that it has not taken yet. */
const SEND_WINDOW = 4;

if (!parentPort) throw new Error('zstd-worker runs only as a worker thread');
const port = parentPort;

function post(message: FromZstdWorker, transfer: ArrayBuffer[] = []): void {
  port.postMessage(message, transfer);
}

/** What the current entry's content becomes, and how far it got. */
interface Content {
  to: ContentTarget;
  bytes: number;
}

class LayerReader {
  /** The blob's digest. */
  readonly #digest: string;
  /** Names the layer in messages. */
  readonly #subject: string;
  readonly #dctx = new zstd.DCtx();
  readonly #output = Buffer.allocUnsafeSlow(OUTPUT);
  readonly #framer: TarFramer;
  readonly #hash: ReturnType<typeof hasherFor>;
  /** Compressed input from the main thread, each returned to it once read. */
  readonly #inputs: { buffer: ArrayBuffer; bytes: Uint8Array }[] = [];
  #ended = false;
  /** zstd filled the output last time and may hold more. */
  #full = false;
  /** The input stopped inside a zstd frame. */
  #inFrame = false;
  /** Content bytes of the entry whose header was last sent; set until the main thread decides. */
  #size: number | undefined;
  #content: Content | undefined;
  #credits = SEND_WINDOW;
  #running = false;
  #failed = false;
  /**
   * Why the layer could not be decoded, held until the blob's end: a flipped byte usually breaks
   * decompression long before the digest can be checked, and a wrong digest is the truer report.
   */
  #corrupt: unknown;

  constructor(digest: string, subject: string) {
    this.#digest = digest;
    this.#subject = subject;
    this.#framer = new TarFramer(subject);
    this.#hash = hasherFor(digest);
  }

  receive(message: ToZstdWorker): void {
    if (message.type === 'input') this.#hash.update(new Uint8Array(message.data, 0, message.length));
    if (this.#corrupt !== undefined) {
      // Decoding stopped; the rest of the blob is only hashed.
      if (message.type === 'input') post({ type: 'free', data: message.data }, [message.data]);
      else if (message.type === 'end') this.#fail(this.#checkDigest() ?? this.#corrupt);
      return;
    }
    if (this.#failed) return;
    switch (message.type) {
      case 'input':
        this.#inputs.push({ buffer: message.data, bytes: new Uint8Array(message.data, 0, message.length) });
        break;
      case 'end': {
        this.#ended = true;
        const mismatch = this.#checkDigest();
        if (mismatch) {
          this.#fail(mismatch);
          return;
        }
        break;
      }
      case 'content':
        this.#start(message.to);
        break;
      case 'credit':
        this.#credits++;
        break;
    }
    void this.#run();
  }

  /** Frames and writes until input runs out or the main thread must answer; one run at a time. */
  async #run(): Promise<void> {
    if (this.#running) return;
    this.#running = true;
    try {
      // Until the main thread must answer, or has not taken the chunks sent, or there is no input left.
      while (!this.#failed && this.#size === undefined && !(this.#content?.to.kind === 'send' && this.#credits === 0)) {
        const frame = this.#framer.next();
        if (frame) await this.#take(frame);
        else if (this.#decompress()) continue;
        else if (this.#ended) this.#finish();
        else break;
      }
    } catch (err) {
      this.#fail(err);
    } finally {
      this.#running = false;
    }
  }

  async #take(frame: Frame): Promise<void> {
    if (frame.kind === 'header') {
      const header = await decodeHeader(frame.header, this.#subject);
      const entry = treeEntry(header, this.#subject);
      // tar-stream reads no content after a directory's header, whatever its size says.
      const size = header.type === 'directory' ? 0 : header.size;
      this.#framer.content(size);
      this.#size = size;
      post({ type: 'entry', entry });
      return;
    }
    const content = this.#content;
    if (!content) throw new Error('zstd-worker: content without a target');
    const { to } = content;
    if (to.kind === 'file') {
      writeAll(to.fd, frame.bytes, to.position + content.bytes);
    } else if (to.kind === 'send') {
      // A copy the main thread owns: the output buffer is refilled at once.
      const chunk = new Uint8Array(frame.bytes);
      this.#credits--;
      post({ type: 'chunk', data: chunk.buffer }, [chunk.buffer]);
    }
    content.bytes += frame.bytes.length;
    if (frame.last) this.#endContent();
  }

  #start(to: ContentTarget): void {
    if (this.#size === undefined) throw new Error('zstd-worker: a content target without an entry');
    this.#content = { to, bytes: 0 };
    const size = this.#size;
    this.#size = undefined;
    if (size === 0) this.#endContent();
  }

  #endContent(): void {
    post({ type: 'done', bytes: this.#content?.bytes ?? 0 });
    this.#content = undefined;
  }

  /** Decompresses the next input into the output and hands it to the framer; false when there is none. */
  #decompress(): boolean {
    for (;;) {
      const input = this.#inputs[0];
      if (!input && !this.#full) return false;
      const src = input?.bytes ?? EMPTY;
      let result: [number, number, number];
      try {
        result = this.#dctx.decompressStream(this.#output, src);
      } catch (err) {
        throw corruptArchive(err, this.#subject);
      }
      const [remaining, produced, consumed] = result;
      this.#full = produced === OUTPUT && remaining !== 0;
      this.#inFrame = remaining !== 0;
      if (input) {
        input.bytes = src.subarray(consumed);
        if (input.bytes.length === 0) {
          this.#inputs.shift();
          post({ type: 'free', data: input.buffer }, [input.buffer]);
        }
      }
      if (produced > 0) {
        this.#framer.feed(this.#output.subarray(0, produced));
        return true;
      }
    }
  }

  #finish(): void {
    if (this.#inFrame) throw new CkptError('CORRUPT_ARCHIVE', 'truncated or corrupt archive (it ends inside a zstd frame)', { subject: this.#subject });
    this.#framer.end();
    this.#failed = true; // nothing more to do: later messages are ignored
    post({ type: 'end' });
  }

  #fail(err: unknown): void {
    this.#failed = true;
    const errno = (err as NodeJS.ErrnoException).code;
    // A failed write is the file system's: the main thread names the file. Anything else broke the layer.
    if (typeof errno === 'string' && /^E[A-Z]+$/.test(errno)) {
      post({ type: 'error', error: errorToThread(err) });
      return;
    }
    const broken = corruptArchive(err, this.#subject);
    if (!this.#ended && this.#corrupt === undefined && broken instanceof CkptError && broken.code === 'CORRUPT_ARCHIVE') {
      this.#corrupt = broken;
      // What was queued for decoding is hashed already: give the buffers back so the rest can come.
      for (const input of this.#inputs.splice(0)) post({ type: 'free', data: input.buffer }, [input.buffer]);
      return;
    }
    post({ type: 'error', error: errorToThread(broken) });
  }

  /** DIGEST_MISMATCH unless the compressed bytes received, all of them, have the blob's digest. */
  #checkDigest(): CkptError | null {
    return digestMismatch(this.#digest, this.#hash, this.#subject);
  }
}

const EMPTY = new Uint8Array(0);

/** Writes all of `bytes` at `position` of the open file `fd`. */
function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length; ) done += writeSync(fd, bytes, done, bytes.length - done, position + done);
}

// A worker may be started before its layer is known (threads/spares.ts): the first message names it.
let reader: LayerReader | undefined;
port.on('message', (message: ToZstdWorker) => {
  if (message.type === 'layer') reader = new LayerReader(message.digest, message.subject);
  else reader?.receive(message);
});
