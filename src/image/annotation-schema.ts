import { z } from 'zod';
import { Annotation } from '../oci/mediatypes.js';
import { CRIO_PREFIX, CRIU_PREFIX, CkptAnnotation, PODMAN_PREFIX } from './annotations.js';

/**
 * Every manifest annotation ckpt writes, described: the source of schemas/annotations.schema.json,
 * the reference users and other tools read.
 */
const text = (description: string) => z.string().optional().describe(description);

const criu = {
  'engine.name': 'engine that made the checkpoint: podman, cri-o, containerd or criu',
  'engine.version': 'version of that engine on the node that made it',
  'container.name': 'container name (containerd restores images carrying this key at the tag)',
  'pod.name': 'Kubernetes pod name',
  'pod.id': 'pod sandbox ID',
  'pod.namespace': 'Kubernetes namespace',
  'pod.uid': 'Kubernetes pod UID',
  rootfsImageName: 'base image name',
  rootfsImageUserRequested: 'base image as the user asked for it',
  rootfsImageSha: 'base image digest, where the engine recorded one',
  rootfsImageID: 'base image ID',
  rawImageName: 'base image name before resolution',
  'runtime.name': 'OCI runtime (runc, crun, io.containerd.runc.v2)',
  'runtime.version': 'OCI runtime version on the node',
  'criu.version': 'CRIU version as major*10000+minor*100+sublevel',
  'conmon.version': 'conmon version (Podman)',
  'host.arch': 'architecture of the checkpointed processes',
  'host.kernel': 'kernel release of the node that made the checkpoint',
  'cgroup.version': 'v1 or v2 on the node that made the checkpoint',
  'distribution.name': 'distribution ID of that node (os-release)',
  'distribution.version': 'distribution VERSION_ID of that node',
} as const;

const podman = {
  name: 'container name; Podman names the restored container after it',
  rawImageName: 'base image name before resolution',
  rootfsImageID: 'base image ID; Podman looks the base image up by it',
  rootfsImageName: 'base image name',
  'podman.version': 'Podman version',
  'criu.version': 'CRIU version number',
  'runtime.name': 'OCI runtime: Podman recognises the image by this key and requires it to equal its own runtime',
  'runtime.version': 'OCI runtime version',
  'conmon.version': 'conmon version',
  'host.arch': 'architecture',
  'host.kernel': 'kernel release',
  'cgroups.version': 'cgroup version (v1, v2)',
  'distribution.name': 'distribution ID',
  'distribution.version': 'distribution version',
} as const;

const crio = {
  name: 'container name: CRI-O recognises a checkpoint image by this key',
  rawImageName: 'base image name before resolution',
  rootfsImageID: 'base image ID',
  rootfsImageName: 'base image name',
  'cri-o.version': 'CRI-O version',
  'criu.version': 'CRIU version number',
} as const;

function family(prefix: string, keys: Record<string, string>) {
  return Object.fromEntries(Object.entries(keys).map(([key, description]) => [prefix + key, text(description)]));
}

export const CheckpointAnnotationsSchema = z
  .object({
    [Annotation.created]: text('RFC 3339 time of the checkpoint'),
    [Annotation.baseName]: text('base image name'),
    [Annotation.baseDigest]: text('base image digest, where known'),
    ...family(CRIO_PREFIX, crio),
    ...family(PODMAN_PREFIX, podman),
    ...family(CRIU_PREFIX, criu),
    [CkptAnnotation.format]: text('version of the ckpt checkpoint image format (1)'),
    [CkptAnnotation.engine]: text('engine that made the checkpoint'),
    [CkptAnnotation.restorableBy]: text('comma-separated runtimes that can restore it'),
    [CkptAnnotation.processes]: text('number of checkpointed processes'),
    [CkptAnnotation.memoryBytes]: text('bytes of memory pages'),
    [CkptAnnotation.memoryFiles]: text('number of pages-*.img files'),
    [CkptAnnotation.rootfsDiffFiles]: text('files added or changed in the container file system'),
    [CkptAnnotation.rootfsDiffBytes]: text('bytes of those files'),
    [CkptAnnotation.rootfsDiffArchiveBytes]: text('size of rootfs-diff.tar itself'),
    [CkptAnnotation.deletedFiles]: text('JSON array of files deleted from the base image (the first 100)'),
    [CkptAnnotation.filesCount]: text('entries in the checkpoint tree'),
    [CkptAnnotation.filesBytes]: text('bytes in the checkpoint tree'),
  })
  .catchall(z.string())
  .describe(
    'Manifest annotations of a ckpt checkpoint image (artifactType application/vnd.ckpt.checkpoint.v1). ' +
      'Layers carry dev.ckpt.layer = metadata | pages | rootfs-diff. The runtime families are written as --compat selects; ' +
      'the org.criu.checkpoint.* set is always complete (empty values where unknown). Under an image index (containerd), ' +
      'the index carries the org.opencontainers.image.* and org.criu.checkpoint.* keys too.',
  );
