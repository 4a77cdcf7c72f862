// Prometheus metrics (prom-client), served on --metrics-listen HOST:PORT at /metrics. Instruments
// are updated where things happen; gauges of state are read when scraped.
import http from 'node:http';
import type { Logger } from 'pino';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export interface BrokerState {
  sessions(): { connected: number; waiting: number };
  ownedHandles(): number;
  nativeEvents(): bigint;
  nativeQueue(): { depth: number; callbackMaxSeconds: number };
  /** Requests stopped before the library because a pointer in them was not the broker's memory. */
  unvalidatedPointers(): number;
}

/** A counter that mirrors a running total kept elsewhere, read when scraped. */
function totalCounter(registry: Registry, name: string, help: string, read: () => number): void {
  let counted = 0;
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const total = read();
      this.inc(total - counted);
      counted = total;
    },
  });
}

export class Metrics {
  readonly registry = new Registry();
  readonly eventsDelivered = new Counter({ name: 'lkb_events_delivered_total', help: 'Events handed to a session\'s transport, by event kind', labelNames: ['kind'], registers: [this.registry] });
  readonly eventsDropped = new Counter({ name: 'lkb_events_dropped_total', help: 'Events not delivered, by event kind and reason (slow_reader, stream_broken, unowned, undecodable)', labelNames: ['kind', 'reason'], registers: [this.registry] });
  readonly eventLatency = new Histogram({
    name: 'lkb_event_latency_seconds',
    help: 'From the native callback to the hand-over to the session\'s transport',
    buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
    registers: [this.registry],
  });
  readonly requestDuration = new Histogram({
    name: 'lkb_request_duration_seconds',
    help: 'Handling of one worker request, including the library call, by request kind',
    labelNames: ['kind'],
    buckets: [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1],
    registers: [this.registry],
  });
  readonly refused = new Counter({ name: 'lkb_requests_refused_total', help: 'Requests answered with a contract error, by code', labelNames: ['code'], registers: [this.registry] });

  constructor(state: BrokerState) {
    collectDefaultMetrics({ register: this.registry }); // process memory, CPU, event-loop lag, GC
    new Gauge({
      name: 'lkb_sessions',
      help: 'Sessions, by state (connected, waiting_resume)',
      labelNames: ['state'],
      registers: [this.registry],
      collect() {
        const s = state.sessions();
        this.set({ state: 'connected' }, s.connected);
        this.set({ state: 'waiting_resume' }, s.waiting);
      },
    });
    new Gauge({ name: 'lkb_owned_handles', help: 'Handles the broker holds for all sessions', registers: [this.registry], collect() { this.set(state.ownedHandles()); } });
    totalCounter(this.registry, 'lkb_native_events_total', 'Events taken from the native callback queue', () => Number(state.nativeEvents()));
    totalCounter(
      this.registry,
      'lkb_unvalidated_pointers_total',
      'Requests stopped just before liblivekit_ffi because a pointer field in them was not inside memory the broker allocated for them (always 0 unless the broker has a bug)',
      state.unvalidatedPointers,
    );
    new Gauge({ name: 'lkb_native_queue_depth', help: 'Events in the native queue, not yet drained', registers: [this.registry], collect() { this.set(state.nativeQueue().depth); } });
    new Gauge({
      name: 'lkb_native_callback_max_seconds',
      help: 'Longest time a library thread spent in the callback since start',
      registers: [this.registry],
      collect() {
        this.set(state.nativeQueue().callbackMaxSeconds);
      },
    });
  }

  /** Serves /metrics on HOST:PORT; resolves with the bound address. */
  listen(host: string, port: number, log: Logger): Promise<http.Server> {
    const server = http.createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end('metrics are at /metrics\n');
        return;
      }
      this.registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': this.registry.contentType }).end(text),
        (err: Error) => res.writeHead(500).end(`${err.message}\n`),
      );
    });
    return new Promise((resolve, reject) => {
      server.once('error', (err) => reject(new Error(`cannot serve metrics on ${host}:${port}: ${err.message}`)));
      server.listen(port, host, () => {
        const address = server.address();
        log.info({ metrics: typeof address === 'object' && address ? `http://${host}:${address.port}/metrics` : address }, 'serving metrics');
        resolve(server);
      });
    });
  }
}
