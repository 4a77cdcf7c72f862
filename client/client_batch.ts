// ClientMessage.batch built from messages already encoded: each request is encoded when it is
// issued, so the bytes it names are taken then (as a call into the library would take them), not
// when the batch leaves at the end of the turn. `repeated ClientMessage messages = 1` is, on the
// wire, a length-delimited field 1 per message, so the encoded messages are framed as they are.
import { BinaryWriter, WireType } from '@bufbuild/protobuf/wire';

const BATCH_FIELD = 4; // ClientMessage.batch
const MESSAGES_FIELD = 1; // ClientBatch.messages

export function encodeClientBatch(messages: readonly Uint8Array[]): Uint8Array {
  const writer = new BinaryWriter().tag(BATCH_FIELD, WireType.LengthDelimited).fork();
  for (const m of messages) writer.tag(MESSAGES_FIELD, WireType.LengthDelimited).bytes(m);
  return writer.join().finish();
}
