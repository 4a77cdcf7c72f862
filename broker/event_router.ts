// Sends each event from the native queue to the one session that owns what it names: the async id
// of a callback, else the first owned *_handle of the event (room_handle, stream_handle,
// reader_handle, local_participant_handle, ...). Events nobody owns are counted, never broadcast.
// Library logs and panics are not routed: they go to the broker's log (and panics to everyone).
import type { Logger } from 'pino';
import type { Buffer as WireBuffer } from '../proto/gen/ffi_broker_pb.js';
import { FfiEvent, planOf, selected, setFieldValue, fieldValue, type SchemaMessage } from './livekit_schema.js';
import type { HandleRegistry, Owner } from './handle_registry.js';
import type { NativeEvent } from './native/event_pump.js';
import type { OutputMemory } from './output_memory.js';
import { logNativeRecords } from './native_log.js';
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
}

const MEDIA_KINDS = new Set(['audioStreamEvent', 'videoStreamEvent']);

export interface RouterHooks<O> {
  panic(message: string): void;
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
        message = FfiEvent.fromBinary(event.bytes) as unknown as SchemaMessage;
      } catch (err) {
        this.metrics.eventsDropped.inc({ kind: 'unknown', reason: 'undecodable' });
        this.log.error({ err, bytes: event.bytes.length }, 'an event from the library does not decode as livekit.proto.FfiEvent; dropped');
        continue;
      }
      const chosen = selected(message);
      if (chosen === undefined) continue;
      if (chosen.kind === 'logs') {
        logNativeRecords(this.nativeLog, (chosen.value.records as Parameters<typeof logNativeRecords>[1]) ?? []);
        continue;
      }
      if (chosen.kind === 'panic') {
        this.hooks.panic(String(chosen.value.message ?? ''));
        continue;
      }
      const { owner, rewritten } = this.ownerOf(chosen.value);
      const buffers = this.output.take(chosen.value, owner);
      if (owner === undefined) {
        this.metrics.eventsDropped.inc({ kind: chosen.kind, reason: 'unowned' });
        if (this.log.isLevelEnabled('debug')) this.log.debug({ kind: chosen.typeName }, 'event names nothing any session owns; dropped');
        continue;
      }
      const media = MEDIA_KINDS.has(chosen.kind) && (chosen.value.message as { case?: string } | undefined)?.case === 'frameReceived';
      owner.enqueueEvent(rewritten ? (message as unknown as FfiEvent).toBinary() : event.bytes, buffers, { kind: chosen.kind, media, enqueuedNs: event.enqueuedNs });
      touched.add(owner);
      this.hooks.routed(owner, chosen);
    }
    for (const owner of touched) owner.flushEvents();
    return touched;
  }

  private ownerOf(value: SchemaMessage): { owner: O | undefined; rewritten: boolean } {
    const plan = planOf(value.getType());
    if (plan.asyncId !== undefined) {
      const id = fieldValue(value, plan.asyncId);
      if (typeof id === 'bigint') {
        const pending = this.registry.asyncOwner(id, true);
        if (pending !== undefined) {
          if (pending.clientId === id) return { owner: pending.owner, rewritten: false };
          setFieldValue(value, plan.asyncId, pending.clientId);
          return { owner: pending.owner, rewritten: true };
        }
      }
    }
    for (const field of plan.handleRefs) {
      const handle = fieldValue(value, field);
      if (typeof handle !== 'bigint') continue;
      const owner = this.registry.ownerOf(handle) ?? this.registry.formerOwner(handle);
      if (owner !== undefined) return { owner, rewritten: false };
    }
    return { owner: undefined, rewritten: false };
  }
}
