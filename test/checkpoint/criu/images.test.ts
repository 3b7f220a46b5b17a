import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CkptError, isCkptError } from '../../../src/errors.js';
import {
  CriuMagic,
  DUMP_LOG_SCAN_BYTES,
  decodeCore,
  decodeInventory,
  decodePstree,
  decodeStats,
  formatCriuVersion,
  parseCriuVersion,
  parseDumpLog,
} from '../../../src/checkpoint/criu/images.js';
import {
  CoreSchema,
  DumpStatsSchema,
  InventorySchema,
  PstreeEntrySchema,
} from '../../../src/checkpoint/criu/schemas.js';
import { FIXTURES } from '../../helpers/tree.js';

const RAW = join(FIXTURES, 'criu-raw-shell');

/** Runs fn and returns the CkptError INVALID_METADATA it must throw. */
function invalid(fn: () => unknown): CkptError {
  try {
    fn();
  } catch (err) {
    if (!isCkptError(err, 'INVALID_METADATA')) throw err;
    return err;
  }
  throw new Error('expected a CkptError INVALID_METADATA');
}

/** Decodes every CRIU file of interest in a checkpoint directory, checking each against its schema. */
function decodeDir(checkpointDir: string, metaDir = checkpointDir) {
  const read = (dir: string, name: string) => readFileSync(join(dir, name));
  const cores = readdirSync(checkpointDir)
    .filter((n) => /^core-\d+\.img$/.test(n))
    .map((n) => ({ pid: Number(/\d+/.exec(n)?.[0]), ...CoreSchema.parse(decodeCore(read(checkpointDir, n), n)) }))
    .sort((a, b) => a.pid - b.pid);
  return {
    inventory: InventorySchema.parse(decodeInventory(read(checkpointDir, 'inventory.img'), 'inventory.img')),
    pstree: PstreeEntrySchema.array().parse(decodePstree(read(checkpointDir, 'pstree.img'), 'pstree.img')),
    cores,
    stats: DumpStatsSchema.parse(decodeStats(read(metaDir, 'stats-dump'), 'stats-dump')),
  };
}

describe('real checkpoints', () => {
  let tmp: string;
  const extracted = (name: string) => join(tmp, name);

  beforeAll(() => {
    tmp = mkdtempSync(join(tmpdir(), 'ckpt-criu-images-'));
    for (const name of ['podman', 'crio', 'containerd']) {
      mkdirSync(extracted(name));
      execFileSync('tar', ['-xf', join(FIXTURES, `${name}-counter.tar`), '-C', extracted(name)]);
    }
  });
  afterAll(() => rmSync(tmp, { recursive: true, force: true }));

  it('decodes a raw criu dump of a shell and its sleep', () => {
    const { inventory, pstree, cores, stats } = decodeDir(RAW);
    expect(inventory).toEqual({
      imgVersion: 2,
      fdinfoPerId: true,
      hasRootIds: true,
      nsPerId: true,
      rootCgSet: 1,
      lsmtype: 0,
      networkLockMethod: 0,
      plugins: [],
      dumpCriuRunId: 'd7a455a2-1962-477e-9608-3aa53e4a314b',
    });
    expect(pstree).toEqual([
      { pid: 19228, ppid: 0, pgid: 19228, sid: 19228, threads: [19228] },
      { pid: 19235, ppid: 19228, pgid: 19228, sid: 19228, threads: [19235] },
    ]);
    const alive = { mtype: 1, architecture: 'amd64', taskState: 1, taskStateName: 'alive', exitCode: 0 };
    expect(cores).toEqual([
      { pid: 19228, comm: 'sh', ...alive },
      { pid: 19235, comm: 'sleep', ...alive },
    ]);
    expect(stats).toEqual({
      freezingTime: 307,
      frozenTime: 6464,
      memdumpTime: 879,
      memwriteTime: 573,
      pagesScanned: 104,
      pagesSkippedParent: 0,
      pagesWritten: 62,
      irmapResolve: 0,
      pagesLazy: 0,
      pagePipes: 12,
      pagePipeBufs: 12,
      shpagesScanned: 0,
      shpagesSkippedParent: 0,
      shpagesWritten: 0,
    });
    // This dump.log holds only a warning and an error: no version or uname lines.
    expect(parseDumpLog(readFileSync(join(RAW, 'dump.log'), 'utf8'))).toEqual({});
  });

  it('decodes the Podman export: busybox pid 1 and its child 14', () => {
    const { inventory, pstree, cores, stats } = decodeDir(extracted('podman/checkpoint'), extracted('podman'));
    expect(inventory.imgVersion).toBe(2);
    expect(inventory.dumpCriuRunId).toBe('12aad481-b055-477d-85ef-e0e260d9d9c4');
    expect(pstree.map((p) => [p.pid, p.ppid])).toEqual([
      [1, 0],
      [14, 1],
    ]);
    expect(cores.map((c) => [c.pid, c.comm, c.architecture, c.taskStateName])).toEqual([
      [1, 'busybox', 'amd64', 'alive'],
      [14, 'busybox', 'amd64', 'alive'],
    ]);
    expect(stats).toMatchObject({ freezingTime: 100855, frozenTime: 104075, pagesScanned: 273, pagesWritten: 257 });
  });

  it('decodes the CRI-O export and its dump.log', () => {
    const { inventory, pstree, cores, stats } = decodeDir(extracted('crio/checkpoint'), extracted('crio'));
    expect(inventory.dumpCriuRunId).toBe('8be8c0ef-fdfa-4b79-8305-fed44535cf8c');
    expect(pstree.map((p) => [p.pid, p.ppid])).toEqual([
      [1, 0],
      [11, 1],
    ]);
    expect(cores.map((c) => [c.pid, c.comm, c.architecture])).toEqual([
      [1, 'busybox', 'amd64'],
      [11, 'sleep', 'amd64'],
    ]);
    expect(stats).toMatchObject({ freezingTime: 371, frozenTime: 28094, pagesScanned: 50, pagesWritten: 34 });
    const log = parseDumpLog(readFileSync(extracted('crio/dump.log')));
    expect(log).toEqual({ criuVersion: '4.1.1', hostname: 'vm', kernel: '6.18.44-fc-v769', arch: 'x86_64' });
    expect(parseCriuVersion(log.criuVersion ?? '')).toBe(40101);
  });

  it('decodes the containerd export and its dump.log', () => {
    const { pstree, cores, stats } = decodeDir(extracted('containerd/checkpoint'), extracted('containerd'));
    expect(pstree.map((p) => [p.pid, p.ppid, p.threads])).toEqual([
      [1, 0, [1]],
      [14, 1, [14]],
    ]);
    expect(cores.map((c) => [c.pid, c.comm])).toEqual([
      [1, 'busybox'],
      [14, 'sleep'],
    ]);
    expect(stats.pagesWritten).toBe(34);
    expect(parseDumpLog(readFileSync(extracted('containerd/dump.log'), 'utf8'))).toMatchObject({
      criuVersion: '4.1.1',
      kernel: '6.18.44-fc-v769',
    });
  });
});

// A tiny protobuf and CRIU image writer, to build hostile and unusual inputs.
function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  return [...out, Number(v)];
}
const num = (field: number, n: number | bigint) => [...varint(field << 3), ...varint(n)];
const bytes = (field: number, data: number[] | string) => {
  const body = typeof data === 'string' ? [...Buffer.from(data)] : data;
  return [...varint((field << 3) | 2), ...varint(body.length), ...body];
};
function u32le(...values: number[]): number[] {
  const b = Buffer.alloc(values.length * 4);
  values.forEach((v, i) => b.writeUInt32LE(v, i * 4));
  return [...b];
}
function image(magics: number[], ...entries: number[][]): Buffer {
  return Buffer.from([...u32le(...magics), ...entries.flatMap((e) => [...u32le(e.length), ...e])]);
}
const PSTREE = [CriuMagic.imgCommon, CriuMagic.pstree];
const CORE = [CriuMagic.imgCommon, CriuMagic.core];
const STATS = [CriuMagic.imgService, CriuMagic.stats];
const onePid = [...num(1, 1), ...num(2, 0), ...num(3, 1), ...num(4, 1)];

describe('unusual but valid images', () => {
  it('takes comm from thread_core when tc is absent (a non-leader thread)', () => {
    const core = image(CORE, [...num(1, 8), ...bytes(5, [...num(1, 0), ...num(2, 24), ...bytes(13, 'worker')])]);
    expect(decodeCore(core, 'core-2.img')).toEqual({ mtype: 8, architecture: 'riscv64', comm: 'worker' });
  });

  it('leaves the architecture undefined for an unknown march', () => {
    const tc = [...num(1, 2), ...num(2, 137), ...num(3, 0), ...num(4, 0), ...num(5, 0), ...bytes(6, 'x')];
    const core = decodeCore(image(CORE, [...num(1, 42), ...bytes(3, tc)]), 'core-1.img');
    expect(core).toEqual({ mtype: 42, comm: 'x', taskState: 2, taskStateName: 'dead', exitCode: 137 });
  });

  it('reads packed threads and skips unknown fields of every wire type', () => {
    const fixed64 = [0xc9, 0x02, 1, 2, 3, 4, 5, 6, 7, 8]; // field 41, wire type 1
    const fixed32 = [0xd5, 0x02, 1, 2, 3, 4]; // field 42, wire type 5
    const unknown = [...num(40, 1), ...fixed64, ...bytes(41, 'x'), ...fixed32];
    const pstree = image(PSTREE, [...onePid, ...unknown, ...bytes(5, [1, 2, 3])]);
    expect(decodePstree(pstree, 'pstree.img')).toEqual([{ pid: 1, ppid: 0, pgid: 1, sid: 1, threads: [1, 2, 3] }]);
  });

  it('reads the inventory plugins list', () => {
    const plugins = bytes(12, [...bytes(12, 'cuda'), ...bytes(12, 'amdgpu')]);
    const inv = decodeInventory(image([CriuMagic.inventory], [...num(1, 2), ...plugins]), 'inventory.img');
    expect(inv).toEqual({ imgVersion: 2, hasRootIds: false, plugins: ['cuda', 'amdgpu'] });
  });
});

describe('malformed images', () => {
  const S = 'bad.img';

  it.each([
    ['an empty file', () => decodePstree(Buffer.alloc(0), S), /too short for a CRIU pstree image/],
    [
      'a wrong head magic',
      () => decodePstree(image([CriuMagic.imgService, CriuMagic.pstree]), S),
      /not a CRIU pstree image: magic 0x55105940 where 0x54564319 was expected/,
    ],
    ['a core image read as pstree', () => decodePstree(image(CORE, onePid), S), /not a CRIU pstree image/],
    ['a head magic on inventory', () => decodeInventory(image(PSTREE, num(1, 2)), S), /not a CRIU inventory image/],
    [
      'a truncated entry length',
      () => decodePstree(Buffer.concat([image(PSTREE, onePid), Buffer.from([1, 0])]), S),
      /truncated entry length at offset 20/,
    ],
    ['a truncated entry', () => decodePstree(image(PSTREE, onePid).subarray(0, -2), S), /runs past the end/],
    [
      'a huge entry length',
      () => decodePstree(Buffer.from([...u32le(...PSTREE, 0xffff_ffff), 8, 1]), S),
      /entry of 4294967295 bytes at offset 8 runs past the end/,
    ],
    [
      'a bad varint',
      () => decodePstree(image(PSTREE, [0x08, ...Array<number>(10).fill(0xff)]), S),
      /longer than 64 bits/,
    ],
    ['a group wire type', () => decodeCore(image(CORE, [...num(1, 1), 0x1b]), S), /group wire type 3/],
    ['a pid over 32 bits', () => decodePstree(image(PSTREE, num(1, 2n ** 32n)), S), /too large for a uint32/],
    [
      'a string where a number belongs',
      () => decodePstree(image(PSTREE, bytes(1, 'one')), S),
      /field 1 has wire type 2 where a varint was expected/,
    ],
    ['a pstree with no processes', () => decodePstree(image(PSTREE), S), /lists no processes/],
    ['a pstree entry without ppid', () => decodePstree(image(PSTREE, num(1, 1)), S), /required field ppid/],
    ['a core without mtype', () => decodeCore(image(CORE, bytes(5, [])), S), /required field mtype/],
    [
      'a core with an incomplete tc',
      () => decodeCore(image(CORE, [...num(1, 1), ...bytes(3, num(1, 1))]), S),
      /required field tc.exit_code is missing/,
    ],
    ['a core with two entries', () => decodeCore(image(CORE, num(1, 1), num(1, 1)), S), /holds 2 entries/],
    ['an inventory without img_version', () => decodeInventory(image([CriuMagic.inventory], []), S), /img_version/],
    ['restore statistics', () => decodeStats(image(STATS, bytes(2, num(1, 0))), S), /no dump statistics/],
    ['stats without frozen_time', () => decodeStats(image(STATS, bytes(1, num(1, 1))), S), /frozen_time/],
  ])('rejects %s', (_what, decode, message) => {
    const err = invalid(decode);
    expect(err.subject).toBe(S);
    expect(err.message).toMatch(message);
  });
});

describe('CRIU versions', () => {
  it.each([
    ['4.1.1', 40101],
    ['4.1', 40100],
    ['3.19', 31900],
    ['3.17.1', 31701],
    ['10.0.3', 100003],
  ])('%s is %i', (text, number) => {
    expect(parseCriuVersion(text)).toBe(number);
    expect(formatCriuVersion(number)).toBe(text);
  });

  it.each(['', '4', 'v4.1', '4.1.1.1', '4.100', '4.1.1 (gitid 0)'])('rejects %j', (text) => {
    expect(invalid(() => parseCriuVersion(text)).message).toMatch(/is not a CRIU version/);
  });

  it.each([-1, 1.5, Number.NaN])('refuses to format %d', (n) => {
    expect(invalid(() => formatCriuVersion(n)).message).toMatch(/not a CRIU version number/);
  });
});

describe('parseDumpLog', () => {
  it('reads lines that carry a --log-pid prefix', () => {
    const log = '(00.000010) 42: Version: 3.19 (gitid v3.19)\n(00.000020) 42: Running on h Linux 6.1.0 #1 aarch64\n';
    expect(parseDumpLog(log)).toEqual({ criuVersion: '3.19', hostname: 'h', kernel: '6.1.0', arch: 'aarch64' });
  });

  it('looks only at the head of the log', () => {
    const late = `${'.'.repeat(DUMP_LOG_SCAN_BYTES)}\n(00.000001) Version: 4.1.1 (gitid 0)\n`;
    expect(parseDumpLog(late)).toEqual({});
    expect(parseDumpLog(Buffer.from(late))).toEqual({});
  });
});
