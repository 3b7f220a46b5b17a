/** ckpt-image: CRIU checkpoints as OCI images. Every CLI command is one of these functions. */
export { build, type BuildOptions, type BuildResult } from './commands/build.js';
export { push, type PushOptions, type PushResult } from './commands/push.js';
export { pull, type PullOptions, type PullResult } from './commands/pull.js';
export { copy, type CopyOptions, type CopyResult } from './commands/copy.js';
export { inspect, type InspectOptions, type InspectResult, InspectResultSchema } from './commands/inspect.js';
export { login, logout, type LoginOptions, type LogoutOptions } from './commands/login.js';

export { CkptError, ExitCode, isCkptError, type ErrorCode } from './errors.js';
export { parseReference, formatReference, type ImageReference, type LayoutReference, type RegistryReference } from './reference.js';

export { openCheckpoint, type OpenCheckpointOptions } from './checkpoint/open.js';
export type { CheckpointSource, SourceEntry, TreeEntry } from './checkpoint/entry.js';
export { CheckpointMetadataSchema, HostInfoSchema, type CheckpointMetadata, type HostInfo, type Engine } from './checkpoint/schemas.js';
export { buildImage, type BuildImageOptions, type BuildImageResult } from './image/build.js';
export { BuildCache } from './image/cache.js';
export type { Compat } from './image/annotations.js';
export type { Compression } from './compress/codec.js';

export type { Target, ReadOnlyTarget, Store, ReadOnlyStore, TransferOptions, FetchOptions, TagOptions, StorePushOptions, ProgressEvent } from './content/target.js';
export { copyGraph } from './content/copy.js';
export { resolveImage, type ResolvedImage } from './content/resolve-image.js';
export { OciLayout } from './layout/store.js';
export { RegistryRepository } from './registry/repository.js';
export type { RegistryOptions } from './registry/options.js';
export { openTarget, type RegistryAccess, type OpenTargetOptions } from './target/open.js';
export * from './oci/schemas.js';
export { MediaType, CHECKPOINT_ARTIFACT_TYPE } from './oci/mediatypes.js';
