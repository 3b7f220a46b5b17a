import type { ReadOnlyTarget } from '../../content/target.js';
import type { ResolvedImage } from '../../content/resolve-image.js';
import { decompressor } from '../../compress/codec.js';
import { CkptError } from '../../errors.js';
import { layerCompression } from '../../oci/mediatypes.js';
import type { Descriptor } from '../../oci/schemas.js';
import { readTar } from '../../tar/read.js';
import type { CheckpointSource, SourceEntry } from '../entry.js';

/** A checkpoint image in a layout or registry, read layer by layer as one tree. */
export class ImageSource implements CheckpointSource {
  readonly kind = 'image';

  constructor(
    readonly name: string,
    readonly target: ReadOnlyTarget,
    readonly image: ResolvedImage,
    /** Only these layers are read (inspect skips the memory pages); all by default. */
    readonly layers: Descriptor[] = image.manifest.layers,
  ) {}

  async fingerprint(): Promise<string> {
    return `image ${this.image.manifestDesc.digest} ${this.layers.map((l) => l.digest).join(',')}`;
  }

  async close(): Promise<void> {
    await this.target.close?.();
  }

  async *entries(signal?: AbortSignal): AsyncGenerator<SourceEntry> {
    for (const layer of this.layers) {
      const compression = layerCompression(layer.mediaType);
      const subject = `${this.name}@${layer.digest}`;
      if (!compression) {
        throw new CkptError('UNSUPPORTED', `layer of type ${layer.mediaType} cannot be read as a file tree`, { subject });
      }
      const blob = await this.target.fetch(layer, { signal });
      const bytes = blob.pipe(decompressor(compression));
      blob.on('error', (err) => bytes.destroy(err));
      for await (const item of readTar(bytes, subject)) {
        const name = item.entry.path.split('/').at(-1) ?? '';
        if (name.startsWith('.wh.')) {
          throw new CkptError('UNSUPPORTED', `whiteout ${item.entry.path}: a checkpoint image holds one tree, not changes`, { subject });
        }
        yield item;
      }
    }
  }
}
