import type { Readable } from 'node:stream';
import type { Descriptor } from '../oci/schemas.js';

/** Progress of one blob moving between two places. */
export interface ProgressEvent {
  /** What moves: a layer, config or manifest descriptor (digest may be unknown while ingesting). */
  mediaType: string;
  digest?: string;
  /** Names the blob while its digest is not known yet (a layer being compressed). */
  id?: string;
  /** Bytes moved so far and the total where known. */
  bytes: number;
  total?: number;
  /** `skipped` when the destination had it, `mounted` when the registry mounted it. */
  state: 'start' | 'progress' | 'done' | 'skipped' | 'mounted';
}

export interface TransferOptions {
  signal?: AbortSignal;
  onProgress?: (event: ProgressEvent) => void;
}

export interface TagOptions extends TransferOptions {
  /**
   * The manifest's bytes, where the caller has them (it built or read them), checked against the
   * descriptor. The manifest need not be in the store then: the store takes it with the tag (a
   * registry in one PUT under the tag), and reads nothing back.
   */
  bytes?: Buffer;
}

export interface StorePushOptions extends TransferOptions {
  /** The caller has just found the store without it (a copy looks before it mounts): not looked for again. */
  knownMissing?: boolean;
}

export interface FetchOptions extends TransferOptions {
  /**
   * The caller hashes the bytes itself, on another thread, and checks the digest before it treats
   * them as complete (a zstd layer decoded on a worker that hashes what it is given): the stream
   * then checks their size only, and the main thread does not hash them a second time.
   */
  digestCheckedByCaller?: boolean;
}

/** Reads blobs; every stream it returns is verified against the descriptor's size and digest. */
export interface ReadOnlyStore {
  /** A short human name (`oci:/path`, `host/repo`) for messages. */
  readonly name: string;
  fetch(desc: Descriptor, options?: FetchOptions): Promise<Readable>;
  exists(desc: Descriptor, options?: TransferOptions): Promise<boolean>;
  /** Releases connections; a store with nothing to release has no close. */
  close?(): Promise<void>;
}

/** Writes blobs and manifests. */
export interface Store extends ReadOnlyStore {
  /** Writes content whose descriptor is known, unless the store has it; fails if the bytes do not match it. */
  push(desc: Descriptor, content: Readable, options?: StorePushOptions): Promise<void>;
  /**
   * Writes content whose digest is not known in advance (a layer compressed on the fly) and
   * returns its descriptor. Nothing becomes visible under the digest until it is complete.
   */
  ingest(mediaType: string, content: Readable, options?: TransferOptions): Promise<Descriptor>;
  /**
   * Makes `desc` (already in this store, or in `from` on the same registry) present without moving
   * its bytes, where the store can; returns false when the caller must push the content instead.
   */
  mount?(desc: Descriptor, from: ReadOnlyTarget, options?: TransferOptions): Promise<boolean>;
}

/** A store whose manifests can be found by tag. */
export interface ReadOnlyTarget extends ReadOnlyStore {
  /** The descriptor a tag (or digest) points to. */
  resolve(reference: string, options?: TransferOptions): Promise<Descriptor>;
  /**
   * The manifest or index a tag (or digest) points to, with its descriptor, where the store can
   * read both at once (a registry answers one GET where `resolve` then `fetch` cost two round trips).
   * The bytes are checked against the descriptor.
   */
  fetchReference?(reference: string, options?: TransferOptions): Promise<{ desc: Descriptor; bytes: Buffer }>;
}

export interface Target extends Store, ReadOnlyTarget {
  /** Points `tag` at a manifest or index: one in the store, or one given with its `bytes`. */
  tag(desc: Descriptor, tag: string, options?: TagOptions): Promise<void>;
}
