// The scalar types of protobuf-es v1's field info, and the wire type each travels as, for the
// broker's own codecs of the livekit schema (livekit_decoding.ts, livekit_encoding.ts).
import { WIRE_DELIMITED, WIRE_FIXED32, WIRE_FIXED64, WIRE_VARINT } from '../proto/wire_writer.js';

// protobuf-es ScalarType numbers (those of FieldDescriptorProto.Type).
export const DOUBLE = 1, FLOAT = 2, INT64 = 3, UINT64 = 4, INT32 = 5, FIXED64 = 6, FIXED32 = 7, BOOL = 8, STRING = 9, BYTES = 12, UINT32 = 13, SFIXED32 = 15, SFIXED64 = 16, SINT32 = 17, SINT64 = 18;

export const wireTypeOf = (scalar: number) =>
  scalar === DOUBLE || scalar === FIXED64 || scalar === SFIXED64 ? WIRE_FIXED64 : scalar === FLOAT || scalar === FIXED32 || scalar === SFIXED32 ? WIRE_FIXED32 : scalar === STRING || scalar === BYTES ? WIRE_DELIMITED : WIRE_VARINT;
