// Known protocol differences between an SDK release and the broker's liblivekit_ffi, in one table.
// Every SDK normally ships its own copy of the library, so an SDK only speaks the protocol of its
// own copy; through the broker it meets the broker's library instead. A session gets the bridges
// of the rows that match the SDK its Hello names (Hello.sdk, Hello.sdk_version, as the SDK would
// pass them to livekit_ffi_initialize) and the library the broker loaded; the broker then does
// what the SDK does not. An unknown or empty SDK version gets no bridges.
import { FfiRequest } from './livekit_schema.js';

export type BridgeName = 'ready-for-room-event' | 'drop-unread-stream-readers' | 'participant-info-v1';

interface BridgeRow {
  name: BridgeName;
  sdk: string;
  /** The first SDK release that does it itself: releases before it get the bridge. */
  sdkBefore: string;
  /** The first library release that needs it (none: every library); an unreadable version counts as needing it. */
  libraryFrom?: string;
  /** What the difference is and where it comes from (the log and README say it). */
  why: string;
}

// The first liblivekit_ffi that holds a room's events until ReadyForRoomEventRequest (rust-sdks #1068).
const READY_FOR_ROOM_EVENT_FROM = '0.12.59';
// The first liblivekit_ffi whose ParticipantInfo has `state = 4` and the fields after it shifted (rust-sdks #978).
export const PARTICIPANT_INFO_STATE_FROM = '0.12.51';

export const SDK_BRIDGES: readonly BridgeRow[] = [
  {
    name: 'ready-for-room-event',
    sdk: 'python',
    sdkBefore: '1.1.10',
    libraryFrom: READY_FOR_ROOM_EVENT_FROM,
    why:
      'liblivekit_ffi from 0.12.59 holds back a room\'s events after its ConnectCallback until ReadyForRoomEventRequest{room_handle} ' +
      'and tears the room down 15 s later without it; the Python SDK sends it from 1.1.10 (python-sdks #665). ' +
      'The broker sends it for the session right after routing a successful ConnectCallback to it',
  },
  {
    name: 'drop-unread-stream-readers',
    sdk: 'python',
    sdkBefore: '1.1.15',
    why:
      'liblivekit_ffi opens a reader handle for every incoming text or byte stream (RoomEvent text_stream_opened, ' +
      'byte_stream_opened); the Python SDK reads data streams from the stream_header/chunk events instead and ' +
      'handles (or drops) those readers only from 1.1.15, so an older SDK leaks one per stream (a voice agent: one per ' +
      'transcription). The broker drops each such reader right after routing its event to the session',
  },
  {
    name: 'participant-info-v1',
    sdk: 'python',
    sdkBefore: '1.1.4',
    libraryFrom: PARTICIPANT_INFO_STATE_FROM,
    why:
      'liblivekit_ffi from 0.12.51 numbers ParticipantInfo with state = 4 and joined_at = 9 inserted (rust-sdks #978: metadata 4→5, ' +
      'attributes 5→6, kind 6→7, disconnect_reason 7→8, kind_details 8→10, permission 9→11); the Python SDK is generated from it ' +
      'from 1.1.4, and an older one fails to decode an event with a participant\'s metadata ("Wire format was corrupt"). The broker ' +
      'renumbers every ParticipantInfo in the events it sends the session (participant_info_v1.ts; no request or response holds one)',
  },
];

/** "1.1.5", "v1.1.10", "1.1.10rc1" → [1, 1, 10]; anything else → undefined. */
function releaseOf(version: string): number[] | undefined {
  const match = /^v?(\d+)\.(\d+)\.(\d+)/.exec(version.trim());
  return match === null ? undefined : match.slice(1, 4).map(Number);
}

function before(a: number[], b: number[]): boolean {
  for (let i = 0; i < 3; i++) if (a[i] !== b[i]) return a[i]! < b[i]!;
  return false;
}

/** The bridges a session whose Hello named `sdk` `sdkVersion` needs with the library of `libraryVersion`. */
export function bridgesFor(sdk: string, sdkVersion: string, libraryVersion: string): BridgeName[] {
  const release = releaseOf(sdkVersion);
  if (release === undefined) return [];
  return SDK_BRIDGES.filter((row) => row.sdk === sdk && before(release, releaseOf(row.sdkBefore)!) && libraryIsFrom(libraryVersion, row.libraryFrom)).map((row) => row.name);
}

/** Whether the library of `libraryVersion` is `from` or later; an unreadable version counts as later. */
function libraryIsFrom(libraryVersion: string, from: string | undefined): boolean {
  if (from === undefined) return true;
  const library = releaseOf(libraryVersion);
  return library === undefined || !before(library, releaseOf(from)!);
}

/** Whether the library of `libraryVersion` holds a room's events until ReadyForRoomEventRequest. */
export const libraryAwaitsReady = (libraryVersion: string): boolean => libraryIsFrom(libraryVersion, READY_FOR_ROOM_EVENT_FROM);

export interface RoutedEvent {
  /** The FfiEvent oneof case, e.g. "connect". */
  kind: string;
  value: Record<string, unknown>;
}

export interface BridgeRequest {
  bridge: BridgeName;
  /** An encoded FfiRequest the broker sends on the session's behalf. */
  bytes: Uint8Array;
  roomHandle: bigint;
}

/**
 * The requests the broker sends for a session with `bridges` right after it routed `event` to it:
 * ReadyForRoomEventRequest after a successful ConnectCallback. Sent after routing, so the session's
 * events keep their order: its ConnectCallback is queued before the room's held-back events start.
 */
export function requestsAfter(bridges: ReadonlySet<BridgeName>, event: RoutedEvent): BridgeRequest[] {
  if (!bridges.has('ready-for-room-event') || event.kind !== 'connect') return [];
  const message = event.value.message as { case?: string; value?: { room?: { handle?: { id?: bigint } } } } | undefined;
  const roomHandle = message?.case === 'result' ? message.value?.room?.handle?.id : undefined;
  if (roomHandle === undefined) return [];
  const bytes = new FfiRequest({ message: { case: 'readyForRoomEvent', value: { roomHandle } } }).toBinary();
  return [{ bridge: 'ready-for-room-event', bytes, roomHandle }];
}

const STREAM_OPENED = new Set(['textStreamOpened', 'byteStreamOpened']);

/**
 * The handles the broker drops for a session with `bridges` right after it routed `event` to it: the
 * reader of a text or byte stream its SDK will never read nor drop. Dropped after routing, so the
 * session still sees the event (which it ignores) in order.
 */
export function handlesDroppedAfter(bridges: ReadonlySet<BridgeName>, event: RoutedEvent): bigint[] {
  if (!bridges.has('drop-unread-stream-readers') || event.kind !== 'roomEvent') return [];
  const message = event.value.message as { case?: string; value?: { reader?: { handle?: { id?: bigint } } } } | undefined;
  const reader = message?.case !== undefined && STREAM_OPENED.has(message.case) ? message.value?.reader?.handle?.id : undefined;
  return reader === undefined ? [] : [reader];
}
