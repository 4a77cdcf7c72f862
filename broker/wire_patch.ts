// Replaces the async id in a message from the library without decoding and re-encoding it: every
// other byte, unknown fields included, stays as the library wrote it. The async id of every
// response and event is a varint field of the selected oneof message (FfiResponse.x.async_id,
// FfiEvent.x.async_id), so the patch goes two levels deep.
import { WIRE_DELIMITED, WIRE_FIXED32, WIRE_FIXED64, WIRE_VARINT, WireWriter, varint64Size, varintSize } from '../proto/wire_writer.js';

interface Field {
  no: number;
  wire: number;
  /** Where the field's tag starts and where the field ends. */
  start: number;
  end: number;
  /** For a length-delimited field, where its content starts. */
  content: number;
}

function readVarint(bytes: Uint8Array, at: { pos: number }): number {
  let value = 0;
  for (let shift = 1; ; shift *= 128) {
    if (at.pos >= bytes.length) throw new Error('wire_patch: truncated varint');
    const b = bytes[at.pos++]!;
    value += (b & 0x7f) * shift;
    if (b < 0x80) return value;
    if (shift > 2 ** 56) throw new Error('wire_patch: varint too long');
  }
}

/** The top-level fields of `bytes[from, to)`. */
function fields(bytes: Uint8Array, from: number, to: number): Field[] {
  const out: Field[] = [];
  const at = { pos: from };
  while (at.pos < to) {
    const start = at.pos;
    const tag = readVarint(bytes, at);
    const wire = tag % 8;
    let content = at.pos;
    if (wire === WIRE_VARINT) readVarint(bytes, at);
    else if (wire === WIRE_FIXED64) at.pos += 8;
    else if (wire === WIRE_FIXED32) at.pos += 4;
    else if (wire === WIRE_DELIMITED) {
      const length = readVarint(bytes, at);
      content = at.pos;
      at.pos += length;
    } else throw new Error(`wire_patch: wire type ${wire}`);
    if (at.pos > to) throw new Error('wire_patch: field runs past its message');
    out.push({ no: Math.floor(tag / 8), wire, start, end: at.pos, content });
  }
  return out;
}

/** `bytes` with every varint field `inner` inside field `outer` set to `value`. */
export function withAsyncId(bytes: Uint8Array, outer: number, inner: number, value: bigint): Buffer {
  const top = fields(bytes, 0, bytes.length);
  const parts: { field: Field; children: Field[]; size: number }[] = [];
  let size = 0;
  for (const field of top) {
    if (field.no !== outer || field.wire !== WIRE_DELIMITED) {
      size += field.end - field.start;
      continue;
    }
    const children = fields(bytes, field.content, field.end);
    let content = 0;
    for (const c of children) content += c.no === inner && c.wire === WIRE_VARINT ? varintSize(c.no * 8) + varint64Size(value) : c.end - c.start;
    parts.push({ field, children, size: content });
    size += varintSize(outer * 8 + WIRE_DELIMITED) + varintSize(content) + content;
  }
  const w = new WireWriter(Buffer.allocUnsafe(size));
  let next = 0;
  for (const field of top) {
    const part = parts[next];
    if (part?.field !== field) {
      w.raw(bytes.subarray(field.start, field.end));
      continue;
    }
    next++;
    w.varint(outer * 8 + WIRE_DELIMITED);
    w.varint(part.size);
    for (const c of part.children) {
      if (c.no !== inner || c.wire !== WIRE_VARINT) {
        w.raw(bytes.subarray(c.start, c.end));
        continue;
      }
      w.varint(c.no * 8);
      w.varint64(value);
    }
  }
  return w.out;
}
