// What an operator's probes and orchestrator see: grpc.health.v1 and server reflection, and a
// SIGTERM during traffic that tells every session, closes it cleanly and exits 0.
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
import { startBroker, waitFor } from './helpers/processes.js';

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
