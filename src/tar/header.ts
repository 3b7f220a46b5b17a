import type { Header } from 'tar-stream';
import type { TreeEntry } from '../checkpoint/entry.js';

/**
 * A mode that tar-stream writes as 0000: it replaces a mode of 0 with its 0644 or 0755, and writes
 * only the permission bits of any other.
 */
const NO_PERMISSIONS = 0o10000;

/** The tar header of a tree entry, as every archive and layer ckpt writes it. */
export function tarHeader(entry: TreeEntry): Partial<Header> & Pick<Header, 'name'> {
  return {
    // Directories carry a trailing slash, as GNU tar and the kubelet's archives write them.
    name: entry.type === 'directory' ? `${entry.path}/` : entry.path,
    type: entry.type === 'hardlink' ? 'link' : entry.type,
    mode: entry.mode & 0o7777 || NO_PERMISSIONS,
    uid: entry.uid,
    gid: entry.gid,
    uname: entry.uname,
    gname: entry.gname,
    mtime: entry.mtime,
    size: entry.type === 'file' ? entry.size : 0,
    linkname: entry.linkname,
  };
}
