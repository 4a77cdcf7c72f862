// The table of pointer fields the broker carries across the process boundary: which message and
// field holds the address, how many bytes it covers (computed from the message itself), and what
// each direction does with the memory. A pointer field not listed here is never sent to the
// library: requests that could carry one are refused (see request_kinds.ts).
import type { SchemaMessage } from './livekit_schema.js';

export interface PointerField {
  /** Full protobuf type name of the message holding the pointer. */
  typeName: string;
  field: string;
  /** Bytes the pointer covers, from the fields of the message that holds it. */
  size(holder: SchemaMessage): number;
  /**
   * In a request: the worker sends the bytes as a Buffer keyed by its pointer value; the broker
   * copies them to native memory it owns, rewrites the field, and frees the copy when the call
   * returns (the library copies the data during the call).
   */
  request: boolean;
  /**
   * In a response or event: the broker copies the bytes into a Buffer keyed by the pointer value,
   * and, when the memory belongs to a handle listed in MEMORY_HANDLE_TYPES, drops that handle.
   */
  output: boolean;
}

const u32 = (holder: SchemaMessage, field: string): number => Number(holder[field] ?? 0);

export const POINTER_FIELDS: readonly PointerField[] = [
  {
    typeName: 'livekit.proto.AudioFrameBufferInfo',
    field: 'data_ptr',
    // Interleaved signed 16-bit PCM.
    size: (info) => u32(info, 'samplesPerChannel') * u32(info, 'numChannels') * 2,
    request: true,
    output: true,
  },
];

/**
 * Owned* messages whose handle exists only to keep the memory behind their pointers alive: once
 * the bytes are copied the broker drops the handle itself, and the worker never owns it.
 */
export const MEMORY_HANDLE_TYPES: ReadonlySet<string> = new Set(['livekit.proto.OwnedAudioFrameBuffer']);

const byKey = new Map(POINTER_FIELDS.map((p) => [`${p.typeName}.${p.field}`, p]));

export function pointerField(typeName: string, field: string): PointerField | undefined {
  return byKey.get(`${typeName}.${field}`);
}
