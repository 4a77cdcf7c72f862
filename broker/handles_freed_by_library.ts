// The handles liblivekit_ffi frees by itself, so the broker forgets them at that moment instead of
// holding them to the end of the session (and then dropping handles the library no longer has:
// "Attempted to drop unknown FFI handle"). From livekit-ffi 0.12.75, src/server/requests.rs: these
// requests take the handle out of the library's handle map (`take_handle`) as soon as the library
// is called, whatever it answers. No event frees a handle by itself; an incremental read's events
// keep naming its reader until the reader's last event, so they still reach the reader's session.
//
// Also freed by the library, and not in this table: a room whose connect timed out waiting for
// ReadyForRoomEventRequest (reported only as a panic), and the frame buffers of stream events
// (the broker drops those itself, pointer_fields.ts MEMORY_HANDLE_TYPES).

/** An event kind whose `last` detail is the last event naming the handle of its `handle` field. */
export interface LastEvent {
  /** The FfiEvent oneof case. */
  kind: string;
  /** The event's field that names the freed handle. */
  handle: string;
  /** The event's oneof (its localName) and the case that ends the events. */
  oneof: string;
  last: string;
}

export interface FreedByRequest {
  /** The request's field (localName) naming the handle the library frees. */
  handle: string;
  /** Present when events still name the freed handle after the request; routed until the last. */
  eventsUntil?: LastEvent;
}

const BYTE_READER_EOS: LastEvent = { kind: 'byteStreamReaderEvent', handle: 'readerHandle', oneof: 'detail', last: 'eos' };
const TEXT_READER_EOS: LastEvent = { kind: 'textStreamReaderEvent', handle: 'readerHandle', oneof: 'detail', last: 'eos' };

/** By FfiRequest oneof case. */
export const FREED_BY_REQUEST: Readonly<Record<string, FreedByRequest>> = {
  byteReadIncremental: { handle: 'readerHandle', eventsUntil: BYTE_READER_EOS },
  byteReadAll: { handle: 'readerHandle' },
  byteWriteToFile: { handle: 'readerHandle' },
  textReadIncremental: { handle: 'readerHandle', eventsUntil: TEXT_READER_EOS },
  textReadAll: { handle: 'readerHandle' },
  byteStreamClose: { handle: 'writerHandle' },
  textStreamClose: { handle: 'writerHandle' },
};

/** By FfiEvent oneof case: the events after which a freed handle is named no more. */
export const LAST_EVENTS: ReadonlyMap<string, LastEvent> = new Map(
  Object.values(FREED_BY_REQUEST).flatMap((f) => (f.eventsUntil === undefined ? [] : [[f.eventsUntil.kind, f.eventsUntil] as const])),
);
