// Protobuf wire primitives written into one preallocated Buffer, for encoders that compute every
// message's size first (proto/server_message_encoding.ts, broker/livekit_encoding.ts): each byte
// is written once, at its final place, instead of into a chunk per nested message that is then
// joined into its parent's.

export const WIRE_VARINT = 0;
export const WIRE_FIXED64 = 1;
export const WIRE_DELIMITED = 2;
export const WIRE_FIXED32 = 5;

export function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Any bigint, as its low 64 bits (two's complement for negatives, as protobuf writes int64). */
export function varint64Size(v: bigint): number {
  if (v >= 0n && v <= 0xffffffffn) return varintSize(Number(v));
  let n = 1;
  for (let x = BigInt.asUintN(64, v); x >= 0x80n; x >>= 7n) n++;
  return n;
}

/** A field of `length` bytes with its tag (`tagBytes` long) and length prefix. */
export const delimitedSize = (tagBytes: number, length: number) => tagBytes + varintSize(length) + length;

/** Sizes of the length-delimited parts, pushed by a size pass in the order its write pass meets them. */
export class SizePlan {
  readonly sizes: number[] = [];
  private next = 0;

  /** Reserves the slot of a part whose size is known only after its children's. */
  reserve(): number {
    return this.sizes.push(0) - 1;
  }

  take(): number {
    return this.sizes[this.next++]!;
  }

  peek(): number {
    return this.sizes[this.next]!;
  }
}

export class WireWriter {
  pos = 0;

  constructor(readonly out: Buffer) {}

  byte(b: number): void {
    this.out[this.pos++] = b;
  }

  /** A non-negative integer up to 2^53. */
  varint(v: number): void {
    while (v >= 0x80) {
      this.out[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.out[this.pos++] = v;
  }

  varint64(v: bigint): void {
    if (v >= 0n && v <= 0xffffffffn) return this.varint(Number(v));
    let x = BigInt.asUintN(64, v);
    while (x >= 0x80n) {
      this.out[this.pos++] = Number(x & 0x7fn) | 0x80;
      x >>= 7n;
    }
    this.out[this.pos++] = Number(x);
  }

  /** `tag` (one byte), length and bytes. */
  delimited(tag: number, data: Uint8Array): void {
    this.out[this.pos++] = tag;
    this.varint(data.length);
    this.out.set(data, this.pos);
    this.pos += data.length;
  }

  raw(data: Uint8Array): void {
    this.out.set(data, this.pos);
    this.pos += data.length;
  }

  /** A string's UTF-8 bytes; `size` is Buffer.byteLength(s). */
  utf8(s: string, size: number): void {
    this.pos += this.out.write(s, this.pos, size, 'utf8');
  }

  fixed32(v: number): void {
    this.pos = this.out.writeUInt32LE(v >>> 0, this.pos);
  }

  sfixed32(v: number): void {
    this.pos = this.out.writeInt32LE(v, this.pos);
  }

  fixed64(v: bigint): void {
    this.pos = this.out.writeBigUInt64LE(BigInt.asUintN(64, v), this.pos);
  }

  float(v: number): void {
    this.pos = this.out.writeFloatLE(v, this.pos);
  }

  double(v: number): void {
    this.pos = this.out.writeDoubleLE(v, this.pos);
  }
}
