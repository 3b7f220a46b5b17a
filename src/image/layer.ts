import { PassThrough, pipeline, type Readable, type Writable } from 'node:stream';
import { pack, type Pack } from 'tar-stream';
import type { TreeEntry } from '../checkpoint/entry.js';
import { tarHeader } from '../tar/header.js';
import type { LayerRole } from '../checkpoint/scan.js';
import { type Compression, compressor, defaultThreads } from '../compress/codec.js';
import type { Store, TransferOptions } from '../content/target.js';
import { DigestStream } from '../content/verify.js';
import { MediaType } from '../oci/mediatypes.js';
import type { Descriptor } from '../oci/schemas.js';

export const LAYER_MEDIA_TYPE: Record<Compression, string> = {
  none: MediaType.layerTar,
  gzip: MediaType.layerGzip,
  zstd: MediaType.layerZstd,
};

export interface LayerOptions {
  compression: Compression;
  level?: number | undefined;
  /** zstd threads; by default those of the machine for memory pages and none for the small layers. */
  threads?: number;
  transfer: TransferOptions;
}

/** Transfer options whose progress events name the layer `id` while its digest is unknown. */
export function layerTransfer(transfer: TransferOptions, id: string): TransferOptions {
  const report = transfer.onProgress;
  return report ? { ...transfer, onProgress: (event) => report({ ...event, id }) } : transfer;
}

/** What a layer is written to: a store, or a worker thread's channel to one. */
export type LayerSink = Pick<Store, 'ingest'>;

export interface WrittenLayer {
  role: LayerRole;
  desc: Descriptor;
  /** sha256 of the uncompressed tar: the config's diff_id. */
  diffId: string;
}

/**
 * One layer being written: entries go into a tar stream that is compressed and handed to the
 * store while it is produced, so a layer is never held whole in memory or written twice.
 */
export class LayerWriter {
  readonly role: LayerRole;
  /** Bytes of file content added so far, for bounding the size of page layers. */
  contentBytes = 0;
  entries = 0;
  readonly #pack: Pack = pack();
  /** Hashes the uncompressed tar; an uncompressed layer's digest is its diff_id already. */
  readonly #diff: DigestStream | undefined;
  readonly #stored: Promise<Descriptor>;
  /** Why the layer stopped: the store's failure, or one elsewhere (abort). */
  #failure: Error | undefined;

  constructor(role: LayerRole, sink: LayerSink, { compression, level, threads, transfer }: LayerOptions) {
    this.role = role;
    this.#diff = compression === 'none' ? undefined : new DigestStream();
    // Memory pages are the bulk: they get zstd's threads, the small layers do not.
    const zstdThreads = threads ?? (role === 'pages' ? defaultThreads() : 0);
    const stages = this.#diff ? [this.#diff, compressor(compression, level, zstdThreads)] : [new PassThrough()];
    // pipeline() carries a failure at either end through every stage, so nothing waits forever.
    const compressed = pipeline([this.#pack as unknown as Readable, ...stages], () => undefined) as unknown as Readable;
    this.#stored = sink.ingest(LAYER_MEDIA_TYPE[compression], compressed, transfer);
    // Surface a failure of the store at once, not only when the layer is closed.
    this.#stored.catch((err: unknown) => this.abort(err as Error));
  }

  /** Adds one entry; `tap`, when given, receives a copy of the content. */
  async add(entry: TreeEntry, content: Readable | undefined, tap?: Writable): Promise<void> {
    try {
      // A stopped pack throws "already finalized or destroyed": the reason it stopped is what counts.
      if (this.#failure) throw this.#failure;
      await this.#add(entry, content, tap);
    } catch (err) {
      // The store stopped reading (a registry refused the upload): the pack failed with "premature
      // close" first, and the store's own reason follows once it has cancelled its upload.
      if (this.#pack.destroyed && !this.#failure) throw await this.#stored.then(() => err, (stored: unknown) => stored);
      throw err;
    }
  }

  async #add(entry: TreeEntry, content: Readable | undefined, tap?: Writable): Promise<void> {
    this.entries++;
    this.contentBytes += entry.size;
    const header = tarHeader(entry);
    if (!content) {
      await new Promise<void>((ok, fail) => this.#pack.entry(header, (err) => (err ? fail(err) : ok())));
      return;
    }
    await new Promise<void>((ok, fail) => {
      const sink = this.#pack.entry(header, (err) => (err ? fail(err) : ok()));
      // A sink fails only with its pack, which reports through the callback above.
      sink.on('error', () => undefined);
      // The whole layer is aborted by the caller on a failure; the entry sink goes with it.
      content.once('error', fail);
      if (tap) {
        tap.once('error', fail);
        content.on('data', (chunk: Buffer) => tap.write(chunk));
        content.once('end', () => tap.end());
      }
      content.pipe(sink as unknown as Writable);
    });
  }

  async close(): Promise<WrittenLayer> {
    this.#pack.finalize();
    const desc = await this.#stored;
    return { role: this.role, desc, diffId: this.#diff?.digest ?? desc.digest };
  }

  /** Stops the layer after a failure elsewhere; the store discards what it had received. */
  abort(err: Error): void {
    this.#failure ??= err;
    this.#pack.destroy(err);
  }
}
