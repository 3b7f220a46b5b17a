/** Small formatting helpers for human output. */

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

export function bytes(n: number): string {
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

export function shortId(id: string | undefined): string {
  if (!id) return '';
  const hex = id.replace(/^sha256:/, '');
  return /^[a-f0-9]{64}$/.test(hex) ? hex.slice(0, 12) : id;
}

/** Parses sizes such as `256MiB`, `1g`, `4096`. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([kmgt]?)(i?b?)$/i.exec(text.trim());
  if (!m) return undefined;
  const power = ['', 'k', 'm', 'g', 't'].indexOf((m[2] ?? '').toLowerCase());
  return Math.round(Number(m[1]) * 1024 ** power);
}

/** Aligned `label  value` lines, skipping empty values. */
export function table(rows: Array<[string, string | undefined]>): string {
  const kept = rows.filter((r): r is [string, string] => r[1] !== undefined && r[1] !== '');
  const width = Math.max(...kept.map(([label]) => label.length));
  return kept.map(([label, value]) => `${label.padEnd(width)}  ${value}`).join('\n');
}
