// The handles a text of the library names: its panics and log records say which object they are
// about only in words, e.g. "... after ConnectCallback (room_handle=5)", a request printed as
// "NewAudioStreamRequest { track_handle: 5, .. }" or "OwnedRoom { handle: FfiOwnedHandle { id: 5 } }",
// "Attempted to drop unknown FFI handle: 5". The router sends such a text only to the session
// that owns every handle it names.
const MENTION = /\b[a-z_]*handle(?:_id)?\s*[:=]\s*(\d+)|FfiOwnedHandle\s*\{\s*id:\s*(\d+)/gi;

export function handlesMentioned(text: string): bigint[] {
  const handles: bigint[] = [];
  for (const match of text.matchAll(MENTION)) handles.push(BigInt(match[1] ?? match[2]!));
  return handles;
}
