// Drains the shim's native queue on the event loop. The shim writes one byte to a pipe when the
// queue goes from idle to busy; the pipe's read end is an ordinary libuv stream here, so waiting
// costs no thread. Each drain hands the events, in arrival order, to one handler call.
import net from 'node:net';
import type { NativeShim } from './shim.js';

export interface NativeEvent {
  bytes: Uint8Array;
  /** CLOCK_MONOTONIC ns when the native thread entered the callback (comparable to process.hrtime.bigint()). */
  enqueuedNs: bigint;
}

const INITIAL_BUFFER = 1 << 20;
// Bounds one drain, so that a flood of events still lets the loop serve sockets in between.
const MAX_EVENTS_PER_DRAIN = 4096;

export class EventPump {
  private buffer = Buffer.allocUnsafe(INITIAL_BUFFER);
  private readonly count = new Uint32Array(1);
  private wakeups: net.Socket | undefined;
  private scheduled = false;
  private stopped = false;
  drained = 0n;

  constructor(
    private readonly shim: NativeShim,
    private readonly onEvents: (events: NativeEvent[]) => void,
  ) {}

  /** Returns false when the loop thread could not be made SCHED_BATCH (see lkq_prefer_producers). */
  start(): boolean {
    const batch = this.shim.preferProducers() === 0;
    const fd = this.shim.open();
    if (fd < 0) throw new Error(`native queue: creating its wake-up pipe failed (errno ${-fd})`);
    this.wakeups = new net.Socket({ fd, readable: true, writable: false });
    this.wakeups.on('data', () => this.drainNow());
    this.wakeups.unref();
    this.drainNow();
    return batch;
  }

  stop(): void {
    this.stopped = true;
    this.wakeups?.destroy();
  }

  /** Takes everything queued now; the next wake-up is armed only once the queue is seen empty. */
  drainNow(): void {
    if (this.stopped) return;
    const events = this.take();
    if (events.length === MAX_EVENTS_PER_DRAIN) {
      this.scheduleMore();
    } else {
      this.shim.arm();
      // An event pushed between the last take and arm() did not wake anyone: look once more.
      const late = this.take();
      if (late.length === MAX_EVENTS_PER_DRAIN) this.scheduleMore();
      for (const event of late) events.push(event);
    }
    if (events.length > 0) {
      this.drained += BigInt(events.length);
      this.onEvents(events);
    }
  }

  private scheduleMore(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.drainNow();
    });
  }

  private take(): NativeEvent[] {
    for (;;) {
      const written = Number(this.shim.drain(this.buffer, this.buffer.length, MAX_EVENTS_PER_DRAIN, this.count));
      if (written < 0) {
        this.buffer = Buffer.allocUnsafe(Math.max(-written, this.buffer.length * 2));
        continue;
      }
      const events: NativeEvent[] = new Array(this.count[0]!);
      let offset = 0;
      for (let i = 0; i < events.length; i++) {
        const len = this.buffer.readUInt32LE(offset);
        const enqueuedNs = this.buffer.readBigUInt64LE(offset + 8);
        // A copy: the drain buffer is reused, the event bytes travel on to sessions.
        events[i] = { bytes: Uint8Array.prototype.slice.call(this.buffer, offset + 16, offset + 16 + len), enqueuedNs };
        offset += (16 + len + 7) & ~7;
      }
      return events;
    }
  }
}
