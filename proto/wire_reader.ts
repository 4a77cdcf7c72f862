// Protobuf wire primitives read from a Uint8Array, for the hand-written decoders of the hot
// messages (proto/client_message_decoding.ts, broker/livekit_decoding.ts). Malformed input throws,
// as protobuf-es does; a field may not run past the end of the message that holds it.

const utf8 = new TextDecoder(); // as protobuf-es decodes strings: invalid bytes become U+FFFD

export class WireReader {
  pos: number;

  constructor(
    readonly buf: Uint8Array,
    start = 0,
    /** Where the message being read ends. */
    public end = buf.length,
  ) {
    this.pos = start;
  }

  /** A varint up to 32 bits (tags, lengths, uint32), as a non-negative number. */
  uint32(): number {
    let value = 0;
    for (let shift = 0; shift < 35; shift += 7) {
      if (this.pos >= this.end) throw new Error('premature EOF');
      const b = this.buf[this.pos++]!;
      value |= (b & 0x7f) << shift;
      if (b < 0x80) return value >>> 0;
    }
    // protobuf allows a 32-bit value written as 10 bytes (a negative int32): take its low bits.
    for (let i = 0; i < 5; i++) {
      if (this.pos >= this.end) throw new Error('premature EOF');
      if (this.buf[this.pos++]! < 0x80) return value >>> 0;
    }
    throw new Error('invalid varint');
  }

  uint64(): bigint {
    const [lo, hi] = this.varint64();
    return hi === 0 ? BigInt(lo >>> 0) : (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  }

  int64(): bigint {
    return BigInt.asIntN(64, this.uint64());
  }

  sint64(): bigint {
    const v = this.uint64();
    return (v >> 1n) ^ -(v & 1n);
  }

  int32(): number {
    return this.uint32() | 0;
  }

  sint32(): number {
    const v = this.uint32();
    return (v >>> 1) ^ -(v & 1);
  }

  bool(): boolean {
    const [lo, hi] = this.varint64();
    return lo !== 0 || hi !== 0;
  }

  string(): string {
    return utf8.decode(this.bytes());
  }

  fixed32(): number {
    return this.view(4).getUint32(0, true);
  }

  sfixed32(): number {
    return this.view(4).getInt32(0, true);
  }

  fixed64(): bigint {
    return this.view(8).getBigUint64(0, true);
  }

  sfixed64(): bigint {
    return this.view(8).getBigInt64(0, true);
  }

  float(): number {
    return this.view(4).getFloat32(0, true);
  }

  double(): number {
    return this.view(8).getFloat64(0, true);
  }

  private view(size: number): DataView {
    if (this.pos + size > this.end) throw new Error('premature EOF');
    const view = new DataView(this.buf.buffer, this.buf.byteOffset + this.pos, size);
    this.pos += size;
    return view;
  }

  /** The low and high 32 bits of a varint. */
  private varint64(): [number, number] {
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new Error('premature EOF');
      const b = this.buf[this.pos++]!;
      if (i < 4) lo |= (b & 0x7f) << (i * 7);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >> 4;
      } else hi |= (b & 0x7f) << (i * 7 - 32);
      if (b < 0x80) return [lo, hi];
    }
    throw new Error('invalid varint');
  }

  /** A length-delimited field's content: a view, not a copy (as protobuf-es reads bytes). */
  bytes(): Uint8Array {
    const length = this.uint32();
    const start = this.pos;
    this.pos += length;
    if (this.pos > this.end) throw new Error('premature EOF');
    return this.buf.subarray(start, this.pos);
  }

  /** Where a length-delimited field's content ends; the reader is at its start. */
  delimitedEnd(): number {
    const length = this.uint32();
    const end = this.pos + length;
    if (end > this.end) throw new Error('premature EOF');
    return end;
  }

  /** Skips a field of `wireType` whose tag was read. */
  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.uint64();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.pos = this.delimitedEnd();
        return;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new Error(`cannot skip wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new Error('premature EOF');
  }
}
