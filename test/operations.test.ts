// What an operator's probes, scraper and orchestrator see: grpc.health.v1 and server reflection,
// Prometheus metrics that move with the traffic, and a SIGTERM during traffic that tells every
// session, closes it cleanly and exits 0.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { loadSync } from '@grpc/proto-loader';
import { protoPath as healthProto } from 'grpc-health-check';
import { AudioSourceType, NewAudioSourceRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { parseAddress } from '../client/address.js';
import { BrokerClient } from '../client/broker_client.js';
import type { Notice } from '../proto/gen/ffi_broker_pb.js';
import { ffi } from './helpers/assertions.js';
import { DisposeRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { WORKERS, spawnWorker, startBroker, waitFor } from './helpers/processes.js';

type Unary = (request: object, callback: (err: grpc.ServiceError | null, response: Record<string, unknown>) => void) => void;

function serviceClient(protoFile: string, service: string, address: string): grpc.Client & Record<string, Unary & ((...args: unknown[]) => unknown)> {
  const pkg = grpc.loadPackageDefinition(loadSync(protoFile, { keepCase: true, enums: String }));
  const Ctor = service.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], pkg) as grpc.ServiceClientConstructor;
  return new Ctor(parseAddress(address).target, grpc.credentials.createInsecure()) as never;
}

const reflectionProto = path.join(path.dirname(require.resolve('@grpc/reflection/package.json')), 'build', 'proto', 'grpc', 'reflection', 'v1', 'reflection.proto');

test('grpc.health.v1 says SERVING for the server and for FfiBroker; reflection lists the services', async () => {
  const broker = await startBroker();
  try {
    const health = serviceClient(healthProto, 'grpc.health.v1.Health', broker.address);
    for (const service of ['', 'livekit.ffi_broker.v1.FfiBroker']) {
      const reply = await new Promise<Record<string, unknown>>((resolve, reject) => health.Check!({ service }, (err, r) => (err ? reject(err) : resolve(r))));
      assert.equal(reply.status, 'SERVING', `health of "${service}"`);
    }
    health.close();

    const reflection = serviceClient(reflectionProto, 'grpc.reflection.v1.ServerReflection', broker.address);
    const call = (reflection.ServerReflectionInfo as () => grpc.ClientDuplexStream<object, { list_services_response?: { service: { name: string }[] } }>)();
    const answer = new Promise<string[]>((resolve, reject) => {
      call.on('data', (r) => resolve((r.list_services_response?.service ?? []).map((s: { name: string }) => s.name)));
      call.on('error', reject);
    });
    call.write({ list_services: '' });
    const services = await answer;
    call.end();
    reflection.close();
    assert.ok(services.includes('livekit.ffi_broker.v1.FfiBroker'), `reflection lists ${services.join(', ')}`);
  } finally {
    await broker.stop();
  }
});

test('SIGTERM during traffic: every session gets ShuttingDown, then a clean close; the broker exits 0 and removes its socket', async () => {
  const broker = await startBroker(['--shutdown-timeout', '3000']);
  const clients = [await BrokerClient.connect(broker.address), await BrokerClient.connect(broker.address)];
  const notices: Notice[][] = clients.map(() => []);
  const closes = clients.map((c, i) => {
    c.on('notice', (n) => notices[i]!.push(n));
    return new Promise<unknown>((resolve) => c.once('close', resolve));
  });
  // Traffic: a stream of requests from each client while the signal arrives.
  let answered = 0;
  const traffic = clients.map(async (c) => {
    for (;;) {
      try {
        await c.request(ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 100 }) }));
        answered++;
      } catch {
        return;
      }
    }
  });
  await waitFor(() => answered > 20, 5000, 'traffic');
  const started = Date.now();
  broker.proc.kill('SIGTERM');
  const reasons = await Promise.all(closes);
  assert.deepEqual(reasons, [undefined, undefined], 'both sessions closed cleanly (status OK)');
  for (const list of notices) {
    const shutting = list.find((n) => n.notice.case === 'shuttingDown')?.notice;
    assert.ok(shutting?.case === 'shuttingDown', 'a ShuttingDown notice before the close');
    assert.equal(shutting.value.graceMs, 3000);
  }
  assert.equal(await broker.stop(), 0, 'exit code 0');
  assert.ok(Date.now() - started < 3000 + 2000, 'within --shutdown-timeout');
  assert.equal(fs.existsSync(broker.socketPath), false);
  await Promise.all(traffic);
  assert.ok(broker.logs.some((r) => r.msg === 'shutting down') && broker.logs.some((r) => r.msg === 'stopped'));
});

/** One sample of a Prometheus text exposition, e.g. metric('lkb_sessions{state="connected"}'). */
function sample(text: string, series: string): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(series + ' '));
  return line === undefined ? undefined : Number(line.slice(series.length + 1));
}

test('/metrics: sessions, handles, native events, deliveries, request latency and refusals move with the traffic', async () => {
  const broker = await startBroker(['--metrics-listen', '127.0.0.1:0']);
  try {
    await waitFor(() => broker.logs.some((r) => r.msg === 'serving metrics'), 5000, 'the metrics server');
    const url = String(broker.logs.find((r) => r.msg === 'serving metrics')!.metrics);
    const scrape = async () => (await fetch(url)).text();
    const before = await scrape();
    assert.equal(sample(before, 'lkb_sessions{state="connected"}'), 0);

    const worker = spawnWorker(path.join(WORKERS, 'audio_worker.js'), ['--address', broker.address, '--streams', '1', '--seconds', '0']);
    await worker.next('ready');
    await worker.next('progress');
    const client = await BrokerClient.connect(broker.address);
    await assert.rejects(client.request(ffi({ case: 'dispose', value: new DisposeRequest({ async: false }) })));
    const during = await scrape();
    assert.equal(sample(during, 'lkb_sessions{state="connected"}'), 2);
    assert.equal(sample(during, 'lkb_owned_handles'), 3);
    assert.ok(sample(during, 'lkb_native_events_total')! > (sample(before, 'lkb_native_events_total') ?? 0) + 50, 'native events counted');
    assert.ok(sample(during, 'lkb_events_delivered_total{kind="audioStreamEvent"}')! >= 50, 'audio frames delivered');
    assert.ok(sample(during, 'lkb_event_latency_seconds_count')! >= 50);
    assert.equal(sample(during, 'lkb_request_duration_seconds_count{kind="NewAudioSourceRequest"}'), 1);
    assert.ok(sample(during, 'lkb_request_duration_seconds_count{kind="CaptureAudioFrameRequest"}')! >= 50);
    assert.equal(sample(during, 'lkb_requests_refused_total{code="PERMISSION_DENIED"}'), 1);
    assert.ok(sample(during, 'lkb_native_queue_depth') !== undefined);
    assert.ok(sample(during, 'process_resident_memory_bytes')! > 0);
    assert.ok(during.includes('nodejs_eventloop_lag_seconds'), 'event-loop lag');
    await client.close();
    worker.proc.kill('SIGKILL');
    await worker.exited;
    await waitFor(async () => sample(await scrape(), 'lkb_owned_handles') === 0, 3000, 'handles released in the metrics');
  } finally {
    await broker.stop();
  }
});
