import type { ProgressEvent } from '../content/target.js';
import { bytes } from './format.js';

interface Blob {
  bytes: number;
  total?: number;
  done: boolean;
}

export interface ProgressReporter {
  onProgress: ((event: ProgressEvent) => void) | undefined;
  /** Draws the final state and stops redrawing. */
  finish(): void;
}

/**
 * Progress of blobs moving, on stderr: one line redrawn in place on a terminal (bytes, rate, time
 * left), or a line per finished blob otherwise. Disabled, it hands out no callback at all.
 */
export function progressReporter(verb: string, enabled: boolean, stream: NodeJS.WriteStream = process.stderr): ProgressReporter {
  if (!enabled) return { onProgress: undefined, finish: () => undefined };
  const blobs = new Map<string, Blob>();
  const started = Date.now();
  const tty = stream.isTTY === true;
  let timer: NodeJS.Timeout | undefined;

  const line = () => {
    let moved = 0;
    let total = 0;
    let known = true;
    let finished = 0;
    for (const b of blobs.values()) {
      moved += b.bytes;
      if (b.total === undefined) known = false;
      else total += b.total;
      if (b.done) finished++;
    }
    const seconds = Math.max((Date.now() - started) / 1000, 0.001);
    const rate = moved / seconds;
    const left = known && rate > 0 && total > moved ? `, ${Math.ceil((total - moved) / rate)} s left` : '';
    const of = known ? ` / ${bytes(total)}` : '';
    return `${verb} ${finished}/${blobs.size} blobs: ${bytes(moved)}${of}, ${bytes(Math.round(rate))}/s${left}`;
  };
  const draw = () => stream.write(`\r\x1b[K${line()}`);

  const onProgress = (event: ProgressEvent) => {
    const key = event.id ?? event.digest ?? event.mediaType;
    const done = event.state === 'done' || event.state === 'skipped' || event.state === 'mounted';
    const wasDone = blobs.get(key)?.done === true;
    blobs.set(key, { bytes: event.state === 'skipped' || event.state === 'mounted' ? 0 : event.bytes, total: event.total, done });
    if (tty) timer ??= setInterval(draw, 200).unref();
    else if (done && !wasDone) stream.write(`${event.state} ${event.digest ?? key} (${bytes(event.total ?? event.bytes)})\n`);
  };

  return {
    onProgress,
    finish: () => {
      if (timer) clearInterval(timer);
      if (tty && blobs.size > 0) stream.write(`\r\x1b[K${line()}\n`);
    },
  };
}
