import type { Header } from 'tar-stream';
import type { TreeEntry } from '../checkpoint/entry.js';

/** The tar header of a tree entry, as every archive and layer ckpt writes it. */
export function tarHeader(entry: TreeEntry): Partial<Header> & Pick<Header, 'name'> {
  return {
    // Directories carry a trailing slash, as GNU tar and the kubelet's archives write them.
    name: entry.type === 'directory' ? `${entry.path}/` : entry.path,
    type: entry.type === 'hardlink' ? 'link' : entry.type,
    mode: entry.mode,
    uid: entry.uid,
    gid: entry.gid,
    uname: entry.uname,
    gname: entry.gname,
    mtime: entry.mtime,
    size: entry.type === 'file' ? entry.size : 0,
    linkname: entry.linkname,
  };
}
