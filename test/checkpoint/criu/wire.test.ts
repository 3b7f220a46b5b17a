import { describe, expect, it } from 'vitest';
import { isCkptError } from '../../../src/errors.js';
import { WireReader } from '../../../src/checkpoint/criu/wire.js';

const SUBJECT = 'test.img';

function reader(bytes: number[]): WireReader {
  return new WireReader(Buffer.from(bytes), SUBJECT);
}

function fieldsOf(bytes: number[]) {
  return [...reader(bytes).fields()];
}

/** Runs fn and returns the message of the CkptError INVALID_METADATA it must throw. */
function invalid(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    if (!isCkptError(err, 'INVALID_METADATA')) throw err;
    expect(err.subject).toBe(SUBJECT);
    return err.message;
  }
  throw new Error('expected a CkptError INVALID_METADATA');
}

describe('WireReader.fields', () => {
  it('reads every wire type, in order', () => {
    const fields = fieldsOf([
      ...[0x08, 0xac, 0x02], // 1: varint 300
      ...[0x11, 1, 0, 0, 0, 0, 0, 0, 0x80], // 2: fixed64
      ...[0x1a, 0x02, 0x68, 0x69], // 3: bytes "hi"
      ...[0x25, 0x78, 0x56, 0x34, 0x12], // 4: fixed32
    ]);
    expect(fields).toEqual([
      { field: 1, wireType: 0, value: 300n },
      { field: 2, wireType: 1, value: 0x8000_0000_0000_0001n },
      { field: 3, wireType: 2, value: Buffer.from('hi') },
      { field: 4, wireType: 5, value: 0x12345678 },
    ]);
  });

  it('reads multi-byte field numbers and an empty message', () => {
    // Field 300, varint: key 300 << 3 = 2400 = 0xe0 0x12.
    expect(fieldsOf([0xe0, 0x12, 0x07])).toEqual([{ field: 300, wireType: 0, value: 7n }]);
    expect(fieldsOf([])).toEqual([]);
  });

  it('reads a full 64-bit varint exactly', () => {
    const max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
    expect(fieldsOf([0x08, ...max])).toEqual([{ field: 1, wireType: 0, value: 2n ** 64n - 1n }]);
  });

  it('can be iterated more than once', () => {
    const r = reader([0x08, 0x01]);
    expect([...r.fields()]).toEqual([...r.fields()]);
  });

  it.each([
    ['a truncated varint', [0x08, 0x80], /truncated varint/],
    ['a truncated key', [0x80], /truncated varint/],
    ['an 11-byte varint', [0x08, ...Array<number>(10).fill(0x80), 0x01], /longer than 64 bits/],
    ['a 10th varint byte over 1', [0x08, ...Array<number>(9).fill(0xff), 0x02], /longer than 64 bits/],
    ['a length past the end', [0x0a, 0x05, 0x61], /length 5 runs past the end/],
    ['a huge length', [0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f], /runs past the end/],
    ['a truncated fixed32', [0x0d, 1, 2, 3], /truncated field/],
    ['a truncated fixed64', [0x09, 1, 2, 3, 4, 5, 6, 7], /truncated field/],
    ['a group start', [0x0b], /group wire type 3/],
    ['a group end', [0x0c], /group wire type 4/],
    ['wire type 6', [0x0e, 0x00], /invalid wire type 6/],
    ['wire type 7', [0x0f, 0x00], /invalid wire type 7/],
    ['field number 0', [0x00, 0x01], /invalid field number 0/],
  ])('rejects %s', (_what, bytes, message) => {
    expect(invalid(() => fieldsOf(bytes))).toMatch(message);
  });
});

describe('WireReader typed values', () => {
  function only(bytes: number[]) {
    const r = reader(bytes);
    const [f] = [...r.fields()];
    if (!f) throw new Error('no field');
    return { r, f };
  }

  it('converts varints to u32, u64 and bool', () => {
    const { r, f } = only([0x08, 0xff, 0xff, 0xff, 0xff, 0x0f]);
    expect(r.u32(f)).toBe(0xffff_ffff);
    expect(r.u64(f)).toBe(0xffff_ffff);
    expect(r.bool(f)).toBe(true);
  });

  it('refuses a u32 over 32 bits and a u64 past 2^53', () => {
    const big = only([0x08, 0x80, 0x80, 0x80, 0x80, 0x10]); // 2^32
    expect(invalid(() => big.r.u32(big.f))).toMatch(/too large for a uint32/);
    expect(big.r.u64(big.f)).toBe(2 ** 32);
    const huge = only([0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x10]); // 2^53
    expect(invalid(() => huge.r.u64(huge.f))).toMatch(/too large/);
  });

  it('reads strings and nested messages', () => {
    const { r, f } = only([0x0a, 0x04, 0x08, 0x2a, 0x10, 0x01]);
    const nested = r.message(f);
    expect([...nested.fields()]).toEqual([
      { field: 1, wireType: 0, value: 42n },
      { field: 2, wireType: 0, value: 1n },
    ]);
    expect(nested.subject).toBe(SUBJECT);
    const comm = only([0x0a, 0x02, 0x73, 0x68]);
    expect(comm.r.string(comm.f)).toBe('sh');
  });

  it('reads repeated uint32 both unpacked and packed', () => {
    const unpacked = only([0x28, 0x0e]);
    expect(unpacked.r.u32s(unpacked.f)).toEqual([14]);
    const packed = only([0x2a, 0x03, 0x01, 0xac, 0x02]);
    expect(packed.r.u32s(packed.f)).toEqual([1, 300]);
    const broken = only([0x2a, 0x01, 0x80]);
    expect(invalid(() => broken.r.u32s(broken.f))).toMatch(/truncated varint/);
  });

  it('refuses a field of the wrong wire type', () => {
    const varint = only([0x08, 0x01]);
    expect(invalid(() => varint.r.string(varint.f))).toMatch(/field 1 has wire type 0, not length-delimited/);
    const fixed = only([0x0d, 1, 0, 0, 0]);
    expect(invalid(() => fixed.r.u32(fixed.f))).toMatch(/field 1 has wire type 5 where a varint was expected/);
  });
});
