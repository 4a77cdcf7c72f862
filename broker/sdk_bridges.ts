// Known protocol differences between an SDK release and the broker's liblivekit_ffi, in one table.
// Every SDK normally ships its own copy of the library, so an SDK only speaks the protocol of its
// own copy; through the broker it meets the broker's library instead. A session gets the bridges
// of the rows that match the SDK its Hello names (Hello.sdk, Hello.sdk_version, as the SDK would
// pass them to livekit_ffi_initialize) and the library the broker loaded; the broker then does
// what the SDK does not. An unknown or empty SDK version gets no bridges.
import { FfiRequest } from './livekit_schema.js';

export type BridgeName = 'ready-for-room-event';

interface BridgeRow {
  name: BridgeName;
  sdk: string;
  /** The first SDK release that does it itself: releases before it get the bridge. */
  sdkBefore: string;
  /** The first library release that needs it; an unreadable library version counts as needing it. */
  libraryFrom: string;
  /** What the difference is and where it comes from (the log and README say it). */
  why: string;
}

export const SDK_BRIDGES: readonly BridgeRow[] = [
  {
    name: 'ready-for-room-event',
    sdk: 'python',
    sdkBefore: '1.1.10',
    libraryFrom: '0.12.59',
    why:
      'liblivekit_ffi from 0.12.59 holds back a room\'s events after its ConnectCallback until ReadyForRoomEventRequest{room_handle} ' +
      'and tears the room down 15 s later without it; the Python SDK sends it from 1.1.10 (python-sdks #665). ' +
      'The broker sends it for the session right after routing a successful ConnectCallback to it',
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
  const library = releaseOf(libraryVersion);
  return SDK_BRIDGES.filter(
    (row) => row.sdk === sdk && before(release, releaseOf(row.sdkBefore)!) && (library === undefined || !before(library, releaseOf(row.libraryFrom)!)),
  ).map((row) => row.name);
}

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
