import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { setMaxListeners } from 'node:events';
import { Readable, type Writable } from 'node:stream';
import type { CheckpointSource, TreeEntry } from '../checkpoint/entry.js';
import { DirectorySource } from '../checkpoint/sources/directory.js';
import { ImageSource } from '../checkpoint/sources/image.js';
import { collectHostInfo, hostFingerprint } from '../checkpoint/host.js';
import { containerDumps, interpretScan } from '../checkpoint/metadata.js';
import { CheckpointScanner, type LayerRole, layerRole } from '../checkpoint/scan.js';
import type { CheckpointMetadata, Engine, HostInfo } from '../checkpoint/schemas.js';
import { type Compression, compressionLevel, defaultThreads } from '../compress/codec.js';
import { assertConcurrency, DEFAULT_CONCURRENCY, limiter } from '../content/limit.js';
import { jsonBlob, pushJson } from '../content/push-json.js';
import type { Target, TransferOptions } from '../content/target.js';
import { CkptError, fromSystemError, guardErrors, isAbortError } from '../errors.js';
import { safeEntryPath } from '../tar/safety.js';
import { ustarDirectoryHeader, ustarFileHeader } from '../tar/ustar.js';
import { startSpareWorkers, stopSpareWorkers } from '../threads/spares.js';
import { Annotation, CHECKPOINT_ARTIFACT_TYPE, MediaType } from '../oci/mediatypes.js';
import type { Descriptor, ImageConfig, Index, Manifest } from '../oci/schemas.js';
import { assertRecognisable, assertUserAnnotations, type Compat, CkptAnnotation, imageAnnotations, recordedHostInfo } from './annotations.js';
import { BuildCache, type CachedBuild } from './cache.js';
import { LayerWriter, layerTransfer, type WrittenLayer } from './layer.js';
import { PageLayerFeed, writePageLayer } from './page-layer.js';
import { type PageEntry, pageWorkerSlots } from './page-protocol.js';

export interface BuildImageOptions extends TransferOptions {
  /** Layer compression; zstd by default. */
  compression?: Compression;
  /** Compression level (zstd 1-19, gzip 1-9). */
  level?: number;
  /** Annotation families to write; `auto` picks the checkpoint's own engine. */
  compat?: Compat;
  /** Extra manifest annotations; they override ours. */
  annotations?: Record<string, string>;
  /**
   * Record this node's CRIU, kernel, cgroup and distribution (default true). From a checkpoint
   * image, what its annotations record of the node that made it is kept instead.
   */
  hostInfo?: boolean;
  /** Upper bound of a memory-pages layer, in bytes of content; a larger file gets a layer alone. */
  maxLayerBytes?: number;
  /** Tag to point at the image once every blob is in place. */
  tag?: string;
  /** Remembers built layers so an unchanged checkpoint is not compressed and sent again. */
  cache?: BuildCache;
  /** Blobs checked at the target at once (a cached build's layers; default 4). */
  concurrency?: number;
}

export interface BuildImageResult {
  /** What the tag points to: the manifest, or for containerd an index around it. */
  descriptor: Descriptor;
  manifest: Descriptor;
  config: Descriptor;
  layers: WrittenLayer[];
  /** The layers as the manifest lists them (with their roles as annotations). */
  manifestLayers: Descriptor[];
  metadata: CheckpointMetadata;
  host?: HostInfo;
}

export const DEFAULT_MAX_LAYER_BYTES = 256 * 1024 * 1024;

const HISTORY: Record<LayerRole, string> = {
  metadata: 'ckpt build: checkpoint metadata and CRIU images',
  pages: 'ckpt build: memory pages',
  'rootfs-diff': 'ckpt build: container file-system changes',
};

/** Groups page files into layers of at most `max` bytes of content (a larger file gets a layer alone). */
class PageGroups<T> {
  readonly #max: number;
  #current: { items: T[]; bytes: number } | undefined;

  constructor(max: number) {
    this.#max = max;
  }

  /** Adds a file; returns the group it closed to make room, if any. */
  add(item: T, size: number): T[] | undefined {
    const current = this.#current;
    if (current && current.bytes + size <= this.#max) {
      current.items.push(item);
      current.bytes += size;
      return undefined;
    }
    this.#current = { items: [item], bytes: size };
    return current?.items;
  }

  /** The last, open group. */
  rest(): T[] | undefined {
    const rest = this.#current?.items;
    this.#current = undefined;
    return rest;
  }
}

/**
 * Where each entry went, to refuse what would make an image its own pull refuses (its layers
 * must not overlap, and a hard link needs its file earlier in its own layer): a path given twice
 * (an archive appended to with `tar -r`), but for a directory, and a hard link across layers.
 * It keeps the directories too, which page layers start with.
 */
class LayerPlacement {
  readonly #placed = new Map<string, { entry: TreeEntry; role: LayerRole }>();

  constructor(readonly subject: string) {}

  /** A directory met so far. */
  directory(path: string): TreeEntry | undefined {
    const entry = this.#placed.get(path)?.entry;
    return entry?.type === 'directory' ? entry : undefined;
  }

  /**
   * Places an entry; false for a directory placed before (an image source gives its directories
   * again in every layer that starts with them), which is written once.
   */
  add(entry: TreeEntry, role: LayerRole): boolean {
    const before = this.#placed.get(entry.path)?.entry;
    if (before?.type === 'directory' && entry.type === 'directory') return false;
    if (before) {
      throw new CkptError('UNSUPPORTED', `entry ${JSON.stringify(entry.path)} is in the checkpoint twice (an archive appended to?); an image holds each file once`, {
        subject: this.subject,
      });
    }
    if (entry.type === 'hardlink') {
      const target = safeEntryPath(entry.linkname ?? '', this.subject);
      const to = this.#placed.get(target);
      // Page layers are cut by size and written apart: only the metadata and rootfs-diff layers are
      // one each. A link to a link placed before (tar writers other than GNU's chain them) is a link
      // to that one's file, as a pull and every runtime read it.
      const linkable = to?.entry.type === 'file' || to?.entry.type === 'hardlink';
      if (!linkable || to.role !== role || role === 'pages') {
        throw new CkptError('UNSUPPORTED', `entry ${JSON.stringify(entry.path)} is a hard link to ${JSON.stringify(target)}, which is not a file before it in the same layer of the image; archive the checkpoint with tar --hard-dereference`, {
          subject: this.subject,
        });
      }
    }
    this.#placed.set(entry.path, { entry, role });
    return true;
  }
}

/**
 * Writes the layers of a checkpoint image while reading its source once: each entry goes to the
 * layer of its role, page layers are cut at a size bound, and every layer streams to the store as
 * it is compressed. Page files that can be read by offset (a directory, an uncompressed archive)
 * are written by worker threads, several layers at once; others (a compressed archive, an image)
 * are fed to a worker thread by the main thread as it reads them, one page layer at a time.
 */
async function writeLayers(
  source: CheckpointSource,
  target: Target,
  scanner: CheckpointScanner,
  options: BuildImageOptions,
): Promise<WrittenLayer[]> {
  const compression = options.compression ?? 'zstd';
  const level = compressionLevel(compression, options.level);
  // gzip layers stream through the main thread, where zlib has its own threads.
  const threadCompression = compression === 'gzip' ? undefined : compression;
  // The first failure stops everything else: the source, the workers, the uploads.
  const stop = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, stop.signal]) : stop.signal;
  setMaxListeners(64, signal);
  const transfer: TransferOptions = { signal, onProgress: options.onProgress };
  const maxLayerBytes = options.maxLayerBytes ?? DEFAULT_MAX_LAYER_BYTES;
  let count = 0;
  const nextId = (role: LayerRole) => `layer ${++count} (${role})`;
  const newLayer = (role: LayerRole) =>
    new LayerWriter(role, target, { compression, level, transfer: layerTransfer(transfer, nextId(role)) });
  const metadata = newLayer('metadata');
  type Writing = LayerWriter | PageLayerFeed;
  const pages: Array<Writing | Promise<WrittenLayer>> = [];
  let rootfs: LayerWriter | undefined;
  /** Every layer in manifest order: those still being written and the workers' results. */
  const all = () => [metadata, ...pages, ...(rootfs ? [rootfs] : [])];
  const writing = (layer: Writing | Promise<WrittenLayer>): layer is Writing => layer instanceof LayerWriter || layer instanceof PageLayerFeed;
  const closed = new Map<Writing, Promise<WrittenLayer>>();
  const close = (layer: Writing | Promise<WrittenLayer>): Promise<WrittenLayer> => {
    if (!writing(layer)) return layer;
    let done = closed.get(layer);
    if (!done) closed.set(layer, (done = layer.close()));
    return done;
  };
  const workers = limiter(pageWorkerSlots());
  const placed = new LayerPlacement(source.name);
  /**
   * The directories met so far that `paths` are in and `has` lacks. A page layer starts with
   * them, as they are in the checkpoint: a runtime unpacks each layer apart (containers/storage),
   * and a directory a layer only implies gets mode 0755 and the time of the pull, which the merged
   * tree then shows.
   */
  const parentsFor = (paths: string[], has: Set<string>): TreeEntry[] => {
    const found: TreeEntry[] = [];
    for (const path of paths) {
      const parts = path.split('/');
      for (let i = 1; i < parts.length; i++) {
        const dir = parts.slice(0, i).join('/');
        const entry = placed.directory(dir);
        if (entry && !has.has(dir)) {
          has.add(dir);
          found.push(entry);
        }
      }
    }
    return found;
  };
  const groups = new PageGroups<{ page: PageEntry; path: string }>(maxLayerBytes);
  const startPages = (items: Array<{ page: PageEntry; path: string }> | undefined): void => {
    if (!items || !threadCompression) return;
    const layerTransferOptions = layerTransfer(transfer, nextId('pages'));
    // A zstd thread of its own per layer beside the worker's reading and hashing, and the machine's
    // for a file too large to share a layer (one process's memory: it may be the only layer).
    // Multi-threaded zstd writes the same bytes whatever the count, the same as streamed layers'.
    const alone = items.length === 1 && (items[0]?.page.size ?? 0) > maxLayerBytes;
    const parents = parentsFor(
      items.map((item) => item.path),
      new Set(),
    ).flatMap((dir) => {
      const header = ustarDirectoryHeader(dir);
      return header ? [{ header, path: '', offset: 0, size: 0 }] : [];
    });
    const entries = [...parents, ...items.map((item) => item.page)];
    const job = { entries, compression: threadCompression, level, threads: alone ? defaultThreads() : 1 };
    const written = workers(() => writePageLayer(job, target, layerTransferOptions));
    written.catch((err: unknown) => stop.abort(err));
    pages.push(written);
  };
  const newFeed = (feedCompression: Exclude<Compression, 'gzip'>): PageLayerFeed => {
    // The layer being fed is the only one compressing: it gets the zstd threads a lone layer gets.
    const feed = new PageLayerFeed({ compression: feedCompression, level, threads: defaultThreads() }, target, layerTransfer(transfer, nextId('pages')));
    feed.written.catch((err: unknown) => stop.abort(err));
    return feed;
  };
  /** Page files read in order: fed to a worker under the `header` it can write, else through tar-stream. */
  const addPages = async (entry: TreeEntry, header: Uint8Array | undefined, content: Readable | undefined, tap: Writable | undefined) => {
    const current = pages.at(-1);
    const fits = (layer: Writing) => layer.contentBytes + entry.size <= maxLayerBytes;
    // One streamed page layer at a time: its upload has kept pace with compression, so little is
    // left to wait for, and memory holds one compressor and one upload window, not two.
    const next = async <T extends Writing>(make: () => T): Promise<T> => {
      if (current) await close(current);
      const layer = make();
      pages.push(layer);
      return layer;
    };
    if (header && threadCompression) {
      const feed = current instanceof PageLayerFeed && fits(current) ? current : await next(() => newFeed(threadCompression));
      for (const dir of parentsIn(feed, entry.path)) {
        const dirHeader = ustarDirectoryHeader(dir);
        if (dirHeader) await feed.add(dir, dirHeader, undefined);
      }
      await feed.add(entry, header, content);
    } else {
      const writer = current instanceof LayerWriter && fits(current) ? current : await next(() => newLayer('pages'));
      for (const dir of parentsIn(writer, entry.path)) await writer.add(dir, undefined);
      await writer.add(entry, content, tap);
    }
  };
  const dirsIn = new WeakMap<Writing, Set<string>>();
  /** The directories `path` is in that the streamed page layer does not have yet. */
  const parentsIn = (layer: Writing, path: string): TreeEntry[] => {
    const has = dirsIn.get(layer) ?? new Set<string>();
    dirsIn.set(layer, has);
    return parentsFor([path], has);
  };
  let sparesStarted = false;
  try {
    for await (const { entry, open, region } of source.entries(signal)) {
      // CRIU's inventory at the top is a raw dump's: a --compat family it cannot fill is refused
      // now, not once every layer is written (an archive may hold config.dump anywhere, or not).
      if (entry.path === 'inventory.img' && options.compat && options.compat !== 'auto') assertRecognisable(options.compat, options.annotations ?? {});
      const role = layerRole(entry.path);
      if (!placed.add(entry, role)) continue;
      if (role === 'pages' && threadCompression && !sparesStarted) {
        // Workers boot while the rest is scanned: one per slot for files read by offset, one to feed.
        startSpareWorkers('image/page-worker', region ? pageWorkerSlots() : 1);
        sparesStarted = true;
      }
      const tap = scanner.observe(entry);
      // zstd and uncompressed page files go to the workers, where the worker can write their header.
      const header = role === 'pages' && !tap && threadCompression ? ustarFileHeader(entry) : undefined;
      if (header && region) {
        startPages(groups.add({ page: { header, path: region.path, offset: region.offset, size: entry.size }, path: entry.path }, entry.size));
        continue;
      }
      if (role === 'pages') {
        await addPages(entry, header, open && guardErrors(open()), tap);
        continue;
      }
      let layer = metadata;
      if (role === 'rootfs-diff') {
        rootfs ??= newLayer('rootfs-diff');
        layer = rootfs;
      }
      await layer.add(entry, open && guardErrors(open()), tap);
    }
    startPages(groups.rest());
    return await Promise.all(all().map(close));
  } catch (err) {
    // A caller's abort is what happened, whatever it broke on the way (a layer's tar closed under
    // the next entry); the store's pipeline, stopped by the signal, fails with an AbortError too.
    const cause: unknown = options.signal?.aborted ? options.signal.reason : err;
    stop.abort(isAbortError(cause) ? fromSystemError(cause, source.name) : cause);
    for (const layer of all()) if (writing(layer)) layer.abort(err as Error);
    await Promise.allSettled(all().map(close));
    // What failed first, not the abort it caused elsewhere.
    throw stop.signal.reason;
  } finally {
    await stopSpareWorkers('image/page-worker');
  }
}

/** Config, manifest, an index where containerd needs one, then the tag: the last steps of a build. */
async function publish(
  target: Target,
  layers: WrittenLayer[],
  metadata: CheckpointMetadata,
  host: HostInfo | undefined,
  options: BuildImageOptions,
): Promise<BuildImageResult> {
  const annotations = imageAnnotations(metadata, host, options.compat ?? 'auto', options.annotations);
  const created = annotations.manifest[Annotation.created];
  const transfer: TransferOptions = { signal: options.signal, onProgress: options.onProgress };
  const platform = { architecture: metadata.architecture ?? host?.architecture ?? 'amd64', os: 'linux' };

  const config: ImageConfig = {
    created,
    ...platform,
    config: { Labels: annotations.labels },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((l) => ({ created, created_by: HISTORY[l.role] })),
  };
  const configDesc = (await pushJson(target, MediaType.imageConfig, config, transfer)).desc;
  const manifest: Manifest = {
    schemaVersion: 2,
    mediaType: MediaType.imageManifest,
    artifactType: CHECKPOINT_ARTIFACT_TYPE,
    config: configDesc,
    layers: layers.map((l) => ({ ...l.desc, annotations: { [CkptAnnotation.layer]: l.role } })),
    annotations: annotations.manifest,
  };
  const built = jsonBlob(MediaType.imageManifest, manifest);
  const manifestDesc = built.desc;
  let descriptor: Descriptor = { ...manifestDesc, artifactType: CHECKPOINT_ARTIFACT_TYPE };
  let rootBytes = built.bytes;
  if (annotations.index) {
    await target.push(manifestDesc, Readable.from([rootBytes]), transfer);
    const index: Index = {
      schemaVersion: 2,
      mediaType: MediaType.imageIndex,
      manifests: [{ ...descriptor, platform }],
      annotations: annotations.index,
    };
    ({ desc: descriptor, bytes: rootBytes } = jsonBlob(MediaType.imageIndex, index));
  }
  // The root last, with its tag where there is one: a registry takes both in one PUT. Not once
  // aborted: a cached build gets here without reading anything that would notice.
  options.signal?.throwIfAborted();
  if (options.tag) await target.tag(descriptor, options.tag, { ...transfer, bytes: rootBytes });
  else await target.push(descriptor, Readable.from([rootBytes]), transfer);
  return { descriptor, manifest: manifestDesc, config: configDesc, layers, manifestLayers: manifest.layers, metadata, host };
}

/**
 * Asks this node's programs, unless the cache holds what they answered under the same
 * fingerprint. The fingerprint (`taken`, where the caller has it) is taken first: a program
 * upgraded while they are asked (during a long build) then changes the key, and the next build
 * asks again instead of reusing older answers under the newer key.
 */
async function askHost(
  engine: Engine,
  runtime: string | undefined,
  options: Pick<BuildImageOptions, 'signal' | 'cache'>,
  taken?: string,
): Promise<CacheableFacts> {
  const hostKey = taken ?? (await hostFingerprint(engine, runtime));
  const known = await options.cache?.host(hostKey);
  if (known) return { host: known, hostKey };
  const { host, complete } = await collectHostInfo(engine, runtime, options.signal);
  // Facts missing an answer are asked again next time, not reused while the programs stay the same.
  if (!complete) return { host, hostKey: undefined };
  await options.cache?.putHost(hostKey, host);
  return { host, hostKey };
}

/**
 * This node's facts, asked as soon as config.dump and spec.dump have been read: the programs'
 * `--version` runs (~0.15 s with Podman's) overlap the writing of the layers instead of following
 * it. Undefined without both files (a plain CRIU dump); files that do not parse reject, and the
 * scan's interpretation reports them. The engine and runtime are those interpretScan finds, from
 * the same two files.
 */
async function earlyHostInfo(
  scanner: CheckpointScanner,
  subject: string,
  options: Pick<BuildImageOptions, 'signal' | 'cache'>,
): Promise<CacheableFacts | undefined> {
  const [config, spec] = await Promise.all([scanner.captured('config.dump'), scanner.captured('spec.dump')]);
  if (!config || !spec) return undefined;
  const { engine, runtime } = containerDumps(config, spec, subject);
  return askHost(engine, runtime, options);
}

/** Facts for the cache: `hostKey` is set only for complete facts, which are reused while it holds. */
interface CacheableFacts {
  host: HostInfo | undefined;
  hostKey: string | undefined;
}

const NO_FACTS: CacheableFacts = { host: undefined, hostKey: undefined };

/** This node's facts for a cached build: the cached ones while nothing they come from has changed. */
async function cachedHostInfo(cached: CachedBuild, options: BuildImageOptions): Promise<CacheableFacts> {
  if (options.hostInfo === false) return NO_FACTS;
  const { engine, runtime } = cached.metadata;
  const hostKey = await hostFingerprint(engine, runtime);
  return hostKey === cached.hostKey ? { host: cached.host, hostKey } : askHost(engine, runtime, options, hostKey);
}

/**
 * A cached build holds when the target has every layer. Host facts live only in the config and
 * the annotations, so facts that changed (an upgraded Podman) are published with the same layers.
 */
async function reusable(cached: CachedBuild, target: Target, options: BuildImageOptions, recorded?: CacheableFacts): Promise<CacheableFacts | undefined> {
  // A few at a time: a checkpoint of thousands of small layers must not open thousands of connections.
  const checks = limiter(options.concurrency ?? DEFAULT_CONCURRENCY);
  const present = await Promise.all(cached.layers.map((l) => checks(() => target.exists(l.desc, { signal: options.signal }))));
  if (!present.every(Boolean)) return undefined;
  const facts = recorded ?? (await cachedHostInfo(cached, options));
  for (const l of cached.layers) {
    options.onProgress?.({ mediaType: l.desc.mediaType, digest: l.desc.digest, bytes: l.desc.size, total: l.desc.size, state: 'skipped' });
  }
  return facts;
}

/**
 * Builds a checkpoint image from any checkpoint source into any target (an OCI layout or a
 * registry): layers first, then the config, the manifest, an index where containerd needs one,
 * and the tag last, so the tag never points at anything incomplete. With a cache, a checkpoint
 * built before whose layers the target already has is not read again.
 */
export async function buildImage(source: CheckpointSource, target: Target, options: BuildImageOptions = {}): Promise<BuildImageResult> {
  assertUserAnnotations(options.annotations);
  if (options.concurrency !== undefined) assertConcurrency(options.concurrency);
  // A raw CRIU dump (a directory without config.dump) records no container: a --compat family
  // only the user's annotations could fill is refused before gigabytes are written, not after.
  const compat = options.compat ?? 'auto';
  if (compat !== 'auto' && source instanceof DirectorySource && !existsSync(join(source.name, 'config.dump'))) {
    assertRecognisable(compat, options.annotations ?? {});
  }
  const { cache } = options;
  const key = cache
    ? BuildCache.key({
        format: 1,
        source: await source.fingerprint(),
        compression: options.compression ?? 'zstd',
        level: options.level,
        compat: options.compat ?? 'auto',
        annotations: options.annotations,
        hostInfo: options.hostInfo !== false,
        maxLayerBytes: options.maxLayerBytes ?? DEFAULT_MAX_LAYER_BYTES,
      })
    : undefined;
  // A checkpoint image may have been made on another node: what it records of that node is kept,
  // and this node, which did not make the checkpoint, is not asked.
  const recorded: CacheableFacts | undefined =
    source instanceof ImageSource && options.hostInfo !== false
      ? { host: recordedHostInfo({ ...source.image.index?.annotations, ...source.image.manifest.annotations }), hostKey: undefined }
      : undefined;
  const cached = cache && key ? await cache.get(key) : undefined;
  if (cache && key && cached) {
    const facts = await reusable(cached, target, options, recorded);
    if (facts) {
      const result = await publish(target, cached.layers, cached.metadata, facts.host, options);
      if (JSON.stringify(facts) !== JSON.stringify({ host: cached.host, hostKey: cached.hostKey })) await cache.put(key, { ...cached, ...facts });
      return result;
    }
  }
  const scanner = new CheckpointScanner(source.name);
  // Ends the programs asked early when the build fails.
  const stopAsking = new AbortController();
  const early =
    options.hostInfo === false || recorded
      ? undefined
      : earlyHostInfo(scanner, source.name, {
          cache,
          signal: options.signal ? AbortSignal.any([options.signal, stopAsking.signal]) : stopAsking.signal,
        }).catch(() => undefined);
  let layers: WrittenLayer[];
  let metadata: CheckpointMetadata;
  try {
    layers = await writeLayers(source, target, scanner, options);
    metadata = interpretScan(await scanner.result(), source.name);
  } catch (err) {
    stopAsking.abort();
    throw err;
  }
  const facts = recorded ?? (early ? ((await early) ?? (await askHost(metadata.engine, metadata.runtime, options))) : NO_FACTS);
  const result = await publish(target, layers, metadata, facts.host, options);
  if (cache && key) await cache.put(key, { layers, metadata, ...facts });
  return result;
}
