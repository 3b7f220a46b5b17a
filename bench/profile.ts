/**
 * Summarises V8 CPU profiles (`node --cpu-prof`) of ckpt: where the main thread's time goes, by
 * function (self time) and by source file (self time), with idle time (waiting on I/O, child
 * processes or zstd's worker threads) shown apart.
 *
 *   node --cpu-prof --cpu-prof-dir bench/results/profiles dist/cli/ckpt.js push ...
 *   node node_modules/.cache/ckpt-bench/profile.js bench/results/profiles/CPU.*.cpuprofile [--top 25]
 */
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

interface Node {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: Node[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface Summary {
  wallMs: number;
  idleMs: number;
  gcMs: number;
  byFunction: Array<{ name: string; ms: number; pct: number }>;
  byFile: Array<{ file: string; ms: number; pct: number }>;
}

const SNAPSHOT = 'node_modules/.cache/ckpt-bench/snapshot/';

function where(url: string): string {
  if (!url) return '(native)';
  const path = url.replace(/^file:\/\//, '');
  // The bench runs a copy of dist/ from under node_modules/: name its files as the project's.
  const snapshot = path.indexOf(SNAPSHOT);
  if (snapshot >= 0) return path.slice(snapshot + SNAPSHOT.length);
  const nm = path.lastIndexOf('node_modules/');
  if (nm >= 0) return path.slice(nm + 'node_modules/'.length).split('/').slice(0, path.slice(nm).includes('/@') ? 2 : 1).join('/') + ' (dep)';
  if (path.startsWith('node:')) return path;
  return relative(process.cwd(), path);
}

export function summarise(file: string, top = 20): Summary {
  const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0) / 1000));
  const wallMs = (p.endTime - p.startTime) / 1000;
  const fn = new Map<string, number>();
  const files = new Map<string, number>();
  let idleMs = 0;
  let gcMs = 0;
  for (const [id, ms] of self) {
    const n = byId.get(id);
    if (!n) continue;
    const { functionName, url, lineNumber } = n.callFrame;
    if (functionName === '(idle)') {
      idleMs += ms;
      continue;
    }
    if (functionName === '(garbage collector)') gcMs += ms;
    const key = `${functionName || '(anonymous)'} ${where(url)}${url ? `:${lineNumber + 1}` : ''}`;
    fn.set(key, (fn.get(key) ?? 0) + ms);
    const f = where(url);
    files.set(f, (files.get(f) ?? 0) + ms);
  }
  const rank = <K extends string>(m: Map<string, number>, k: K) =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ [k]: name, ms: Math.round(ms), pct: Math.round((ms / wallMs) * 1000) / 10 }) as Record<K, string> & { ms: number; pct: number });
  return { wallMs: Math.round(wallMs), idleMs: Math.round(idleMs), gcMs: Math.round(gcMs), byFunction: rank(fn, 'name'), byFile: rank(files, 'file') };
}

if (process.argv[1]?.endsWith('profile.js')) {
  const args = process.argv.slice(2);
  const t = args.indexOf('--top');
  const top = t >= 0 ? Number(args.splice(t, 2)[1]) : 20;
  for (const file of args) {
    const s = summarise(file, top);
    console.log(`\n${file}: ${s.wallMs} ms on the main thread's clock; idle ${s.idleMs} ms (${((s.idleMs / s.wallMs) * 100).toFixed(1)}%), GC ${s.gcMs} ms`);
    console.log('  self time by file:');
    for (const r of s.byFile) console.log(`    ${String(r.ms).padStart(7)} ms ${String(r.pct).padStart(5)}%  ${r.file}`);
    console.log('  self time by function:');
    for (const r of s.byFunction) console.log(`    ${String(r.ms).padStart(7)} ms ${String(r.pct).padStart(5)}%  ${r.name}`);
  }
}
