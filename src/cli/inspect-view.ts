import type { CheckpointMetadata, ProcessInfo } from '../checkpoint/schemas.js';
import type { InspectResult } from '../commands/inspect.js';
import { bytes, shortId, table } from './format.js';

const ENGINE_NAME: Record<CheckpointMetadata['engine'], string> = {
  podman: 'Podman',
  'cri-o': 'CRI-O',
  containerd: 'containerd',
  criu: 'CRIU only (raw criu dump)',
};

function ms(us: number | undefined): string | undefined {
  return us === undefined ? undefined : `${(us / 1000).toFixed(1)} ms`;
}

/** A summary in the spirit of `checkpointctl show`. */
export function inspectSummary(result: InspectResult): string {
  const m = result.metadata;
  const podParts = [m.pod?.namespace && `namespace ${m.pod.namespace}`, m.pod?.uid && `uid ${m.pod.uid}`].filter(Boolean);
  const pod = m.pod?.name ? `${m.pod.name}${podParts.length ? ` (${podParts.join(', ')})` : ''}` : undefined;
  const image = m.image.name ?? m.image.reference;
  const diff = m.rootfsDiff ? `${m.rootfsDiff.files} files, ${bytes(m.rootfsDiff.bytes)}` : 'none';
  const stats = m.stats
    ? `frozen ${ms(m.stats.frozenTime)}, memory dump ${ms(m.stats.memdumpTime)}, ${m.stats.pagesWritten} pages written`
    : undefined;
  const criu = [m.criu.version ?? 'version unknown', m.criu.imageVersion !== undefined ? `(image format ${m.criu.imageVersion})` : undefined]
    .filter(Boolean)
    .join(' ');
  const rows: Array<[string, string | undefined]> = [
    ['Checkpoint', `${result.source} (${result.kind})`],
    ['Engine', ENGINE_NAME[m.engine]],
    ['Container', m.container.name ? `${m.container.name}${m.container.id ? ` (${shortId(m.container.id)})` : ''}` : undefined],
    ['Pod', pod],
    ['Image', image ? `${image}${m.image.id ? ` (${shortId(m.image.id)})` : ''}` : undefined],
    ['Runtime', m.runtime],
    ['Created', m.created],
    // A raw dump records no time: this one is a file's, which a copy or touch changes.
    ['Checkpointed', m.checkpointed && m.engine === 'criu' ? `${m.checkpointed} (inventory.img's modification time)` : m.checkpointed],
    ['CRIU', criu],
    ['Architecture', m.architecture],
    ['Dumped on', m.dumpHost ? [m.dumpHost.hostname, m.dumpHost.kernel].filter(Boolean).join(', kernel ') : undefined],
    ['Processes', `${m.processes.length} (${m.processes.map((p) => `${p.command ?? '?'}[${p.pid}]`).join(', ')})`],
    ['Memory', `${bytes(m.memory.bytes)} in ${m.memory.files} page files`],
    ['Rootfs diff', diff],
    ['Deleted files', m.deletedFiles.length ? m.deletedFiles.join(', ') : undefined],
    ['Dump', stats],
    ['Checkpoint size', `${bytes(m.files.bytes)} in ${m.files.count} entries`],
    ['Restorable by', m.restorableBy.join(', ')],
  ];
  if (result.image) {
    const node = result.image.recordedHost;
    if (node) {
      const distribution = [node.distribution?.name, node.distribution?.version].filter(Boolean).join(' ');
      const engine = node.engineVersion && `${m.engine === 'criu' ? 'engine' : ENGINE_NAME[m.engine]} ${node.engineVersion}`;
      const parts = [node.kernel && `kernel ${node.kernel}`, distribution, node.criuVersion && `CRIU ${node.criuVersion}`, node.cgroupVersion && `cgroup ${node.cgroupVersion}`, engine];
      rows.push(['Recorded node', parts.filter(Boolean).join(', ') || undefined]);
    }
    if (result.image.index) rows.push(['Index', result.image.index]);
    rows.push(
      ['Manifest', result.image.digest],
      ['Layers', `${result.image.layers.length}, ${bytes(result.image.size)}`],
    );
  }
  return table(rows);
}

/** The process tree, children indented under their parent. */
export function processTree(processes: ProcessInfo[]): string {
  const pids = new Set(processes.map((p) => p.pid));
  const children = new Map<number, ProcessInfo[]>();
  for (const p of processes) {
    const parent = pids.has(p.ppid) ? p.ppid : 0;
    children.set(parent, [...(children.get(parent) ?? []), p]);
  }
  const lines: string[] = [];
  const walk = (p: ProcessInfo, prefix: string, last: boolean, root: boolean) => {
    const threads = p.threads > 1 ? `, ${p.threads} threads` : '';
    lines.push(`${prefix}${root ? '' : last ? '└─ ' : '├─ '}${p.command ?? '?'} (pid ${p.pid}${threads})`);
    const kids = children.get(p.pid) ?? [];
    const next = root ? prefix : prefix + (last ? '   ' : '│  ');
    kids.forEach((k, i) => walk(k, next, i === kids.length - 1, false));
  };
  for (const root of children.get(0) ?? []) walk(root, '', true, true);
  return lines.join('\n');
}
