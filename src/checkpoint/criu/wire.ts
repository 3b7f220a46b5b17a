import { CkptError } from '../../errors.js';

/**
 * A minimal protobuf wire-format reader for the few CRIU messages ckpt decodes. Every fault throws
 * CkptError INVALID_METADATA naming the file, so hostile images never surface as RangeErrors.
 * Varints and fixed64 values are bigint, exact to 64 bits; the typed accessors turn them into
 * numbers and refuse values that do not fit the field (u32) or a double exactly (u64).
 */

/** One field as it appears on the wire; length-delimited values are views into the input. */
export type WireField =
  | { field: number; wireType: 0; value: bigint }
  | { field: number; wireType: 1; value: bigint }
  | { field: number; wireType: 2; value: Buffer }
  | { field: number; wireType: 5; value: number };

const U32_MAX = 0xffff_ffffn;
/** Field numbers are 29 bits wide; anything larger is corrupt input. */
const MAX_FIELD = 0x1fff_ffff;

export class WireReader {
  /** Read position, advanced only on the private copies that fields() and u32s() iterate with. */
  private pos = 0;

  constructor(
    private readonly buf: Buffer,
    readonly subject: string,
  ) {}

  /** Every field of the message in order, unknown ones included: callers skip what they do not know. */
  *fields(): Generator<WireField> {
    const c = new WireReader(this.buf, this.subject);
    while (!c.done) {
      const key = c.varint();
      const field = Number(key >> 3n);
      const wireType = Number(key & 7n);
      if (field === 0 || field > MAX_FIELD) throw this.fail(`invalid field number ${key >> 3n}`);
      if (wireType === 0) yield { field, wireType, value: c.varint() };
      else if (wireType === 1) yield { field, wireType, value: c.take(8).readBigUInt64LE() };
      else if (wireType === 2) yield { field, wireType, value: c.take(c.length()) };
      else if (wireType === 5) yield { field, wireType, value: c.take(4).readUInt32LE() };
      // proto2 groups (3 and 4): CRIU never writes them, and skipping one needs a nesting parser.
      else if (wireType < 5) throw this.fail(`field ${field} uses the unsupported group wire type ${wireType}`);
      else throw this.fail(`field ${field} has the invalid wire type ${wireType}`);
    }
  }

  /** A nested message, read with the same subject for errors. */
  message(f: WireField): WireReader {
    return new WireReader(this.bytesOf(f), this.subject);
  }

  u32(f: WireField): number {
    return this.toU32(this.varintOf(f), f.field);
  }

  /** A uint64 as a number: counters and times stay far below 2^53, so anything larger is corrupt. */
  u64(f: WireField): number {
    const value = this.varintOf(f);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw this.fail(`field ${f.field} holds ${value}, too large`);
    return Number(value);
  }

  bool(f: WireField): boolean {
    return this.varintOf(f) !== 0n;
  }

  /** Lenient UTF-8: kernel strings such as a task's comm are bytes, not guaranteed text. */
  string(f: WireField): string {
    return this.bytesOf(f).toString('utf8');
  }

  /** A repeated uint32, accepted both unpacked (one varint) and packed (a run of varints). */
  u32s(f: WireField): number[] {
    if (f.wireType !== 2) return [this.u32(f)];
    const out: number[] = [];
    for (const c = new WireReader(f.value, this.subject); !c.done; ) out.push(this.toU32(c.varint(), f.field));
    return out;
  }

  fail(message: string): CkptError {
    return new CkptError('INVALID_METADATA', message, { subject: this.subject });
  }

  private toU32(value: bigint, field: number): number {
    if (value > U32_MAX) throw this.fail(`field ${field} holds ${value}, too large for a uint32`);
    return Number(value);
  }

  private varintOf(f: WireField): bigint {
    if (f.wireType !== 0) throw this.fail(`field ${f.field} has wire type ${f.wireType} where a varint was expected`);
    return f.value;
  }

  private bytesOf(f: WireField): Buffer {
    if (f.wireType !== 2) throw this.fail(`field ${f.field} has wire type ${f.wireType}, not length-delimited`);
    return f.value;
  }

  private get done(): boolean {
    return this.pos >= this.buf.length;
  }

  private varint(): bigint {
    let value = 0n;
    for (let i = 0; i < 10; i++) {
      const byte = this.buf[this.pos++];
      if (byte === undefined) throw this.fail('truncated varint');
      // The tenth byte may carry only bit 63; anything more would overflow 64 bits.
      if (i === 9 && byte > 1) break;
      value |= BigInt(byte & 0x7f) << BigInt(7 * i);
      if (byte < 0x80) return value;
    }
    throw this.fail('invalid varint: longer than 64 bits');
  }

  /** The length prefix of a length-delimited field, checked against what is left. */
  private length(): number {
    const n = this.varint();
    const left = this.buf.length - this.pos;
    if (n > BigInt(left)) throw this.fail(`length ${n} runs past the end (${left} bytes left)`);
    return Number(n);
  }

  private take(n: number): Buffer {
    if (this.pos + n > this.buf.length) throw this.fail('truncated field');
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
}
