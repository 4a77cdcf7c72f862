// Sends each event from the native queue to the one session that owns what it names: the async id
// of a callback, else the first owned *_handle of the event (room_handle, stream_handle,
// reader_handle, local_participant_handle, ...). Events nobody owns are counted, never broadcast.
// Library-wide events (log records, panics) go to the operator's log; one whose text names
// handles (handle_mentions.ts) also goes to the session that owns all of them: a log record as an
// FfiEvent of that record, a panic as an FfiPanic notice. A text naming handles of several
// sessions, or of none, stays in the operator's log, so no session learns another's handles.
import type { Logger } from 'pino';
import type { Buffer as WireBuffer } from '../proto/gen/ffi_broker_pb.js';
import { FFI_EVENT, FfiEvent, planOf, selected, setFieldValue, fieldValue, type SchemaMessage } from './livekit_schema.js';
import { decodeLivekit } from './livekit_decoding.js';
import { withAsyncId } from './wire_patch.js';
import type { HandleRegistry, Owner } from './handle_registry.js';
import type { MediaLane } from './media_lane.js';
import type { NativeEvent } from './native/event_pump.js';
import type { OutputMemory } from './output_memory.js';
import { logNativeRecords, type LogRecord } from './native_log.js';
import { handlesMentioned } from './handle_mentions.js';
import { LAST_EVENTS } from './handles_freed_by_library.js';
import type { Metrics } from './metrics.js';
import type { RoutedEvent } from './sdk_bridges.js';

export interface EventMeta {
  /** The FfiEvent oneof case, e.g. "audioStreamEvent". */
  kind: string;
  /** A frame, which a session that does not keep up may lose (never other events). */
  media: boolean;
  /** CLOCK_MONOTONIC ns when the native thread handed the event over. */
  enqueuedNs: bigint;
}

export interface EventReceiver extends Owner {
  enqueueEvent(ffiEvent: Uint8Array, buffers: WireBuffer[], meta: EventMeta): void;
  flushEvents(): void;
  /** Where the bytes of its frames go, when it has a media lane. */
  readonly lane: MediaLane | undefined;
}

const MEDIA_KINDS = new Set(['audioStreamEvent', 'videoStreamEvent']);

export interface RouterHooks<O> {
  /** `owner`: the session owning every handle the message names, if there is one. */
  panic(message: string, owner: O | undefined): void;
  /** Called once an event was queued for `owner` (the SDK bridges act on some). */
  routed(owner: O, event: RoutedEvent): void;
}

export class EventRouter<O extends EventReceiver> {
  constructor(
    private readonly registry: HandleRegistry<O>,
    private readonly output: OutputMemory<O>,
    private readonly log: Logger,
    private readonly nativeLog: Logger,
    private readonly hooks: RouterHooks<O>,
    private readonly metrics: Metrics,
  ) {}

  /** Routes one drain's events; returns the receivers that got any. */
  route(events: readonly NativeEvent[]): Set<O> {
    const touched = new Set<O>();
    for (const event of events) {
      let message: SchemaMessage;
      try {
        message = decodeLivekit(FFI_EVENT, event.bytes);
      } catch (err) {
        this.metrics.eventsDropped.inc({ kind: 'unknown', reason: 'undecodable' });
        this.log.error({ err, bytes: event.bytes.length }, 'an event from the library does not decode as livekit.proto.FfiEvent; dropped');
        continue;
      }
      const chosen = selected(message);
      if (chosen === undefined) continue;
      if (chosen.kind === 'logs') {
        const records = (chosen.value.records as LogRecord[] | undefined) ?? [];
        logNativeRecords(this.nativeLog, records);
        this.routeRecords(records, event.enqueuedNs, touched);
        continue;
      }
      if (chosen.kind === 'panic') {
        const message = String(chosen.value.message ?? '');
        this.hooks.panic(message, this.ownerOfText(message));
        continue;
      }
      const { owner, clientAsyncId } = this.ownerOf(chosen.value);
      const media = MEDIA_KINDS.has(chosen.kind) && (chosen.value.message as { case?: string } | undefined)?.case === 'frameReceived';
      const buffers = this.output.take(chosen.value, owner, media ? owner?.lane : undefined);
      this.noteLastEvent(chosen.kind, chosen.value);
      if (owner === undefined) {
        this.metrics.eventsDropped.inc({ kind: chosen.kind, reason: 'unowned' });
        if (this.log.isLevelEnabled('debug')) this.log.debug({ kind: chosen.typeName }, 'event names nothing any session owns; dropped');
        continue;
      }
      // The worker's own async id back in place of the broker's, the rest as the library wrote it.
      const bytes = clientAsyncId === undefined ? event.bytes : withAsyncId(event.bytes, chosen.no, planOf(chosen.value.getType()).asyncId!.no, clientAsyncId);
      owner.enqueueEvent(bytes, buffers, { kind: chosen.kind, media, enqueuedNs: event.enqueuedNs });
      touched.add(owner);
      this.hooks.routed(owner, chosen);
    }
    for (const owner of touched) owner.flushEvents();
    return touched;
  }

  /** The session that owns (or just dropped) every handle `text` names; none when it names none. */
  private ownerOfText(text: string): O | undefined {
    let owner: O | undefined;
    for (const handle of handlesMentioned(text)) {
      const of = this.registry.eventOwner(handle);
      if (of === undefined || (owner !== undefined && of !== owner)) return undefined;
      owner = of;
    }
    return owner;
  }

  /** Each record that names a session's handles goes to that session, in one logs event per session. */
  private routeRecords(records: readonly LogRecord[], enqueuedNs: bigint, touched: Set<O>): void {
    const byOwner = new Map<O, LogRecord[]>();
    for (const record of records) {
      const owner = this.ownerOfText(record.message);
      if (owner === undefined) continue;
      const list = byOwner.get(owner);
      if (list === undefined) byOwner.set(owner, [record]);
      else list.push(record);
    }
    for (const [owner, own] of byOwner) {
      const bytes = new FfiEvent({ message: { case: 'logs', value: { records: own } } }).toBinary();
      owner.enqueueEvent(bytes, [], { kind: 'logs', media: false, enqueuedNs });
      touched.add(owner);
    }
  }

  /** A freed handle's last event: later events naming it are nobody's. */
  private noteLastEvent(kind: string, value: SchemaMessage): void {
    const last = LAST_EVENTS.get(kind);
    if (last === undefined || (value[last.oneof] as { case?: string } | undefined)?.case !== last.last) return;
    const handle = value[last.handle];
    if (typeof handle === 'bigint') this.registry.lastEvent(handle);
  }

  /** The owner, and the worker's async id when it chose its own (the event must carry that one). */
  private ownerOf(value: SchemaMessage): { owner: O | undefined; clientAsyncId?: bigint } {
    const plan = planOf(value.getType());
    if (plan.asyncId !== undefined) {
      const id = fieldValue(value, plan.asyncId);
      if (typeof id === 'bigint') {
        const pending = this.registry.asyncOwner(id, true);
        if (pending !== undefined) {
          if (pending.clientId === id) return { owner: pending.owner };
          // The decoded message too, for what reads it after routing (the SDK bridges).
          setFieldValue(value, plan.asyncId, pending.clientId);
          return { owner: pending.owner, clientAsyncId: pending.clientId };
        }
      }
    }
    for (const field of plan.handleRefs) {
      const handle = fieldValue(value, field);
      if (typeof handle !== 'bigint') continue;
      const owner = this.registry.eventOwner(handle);
      if (owner !== undefined) return { owner };
    }
    return { owner: undefined };
  }
}
