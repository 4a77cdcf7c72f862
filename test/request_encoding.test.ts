// What the executor hands to livekit_ffi_request, recorded by a stand-in for the library: the
// request as checked, with the broker's pointer and async id, and nothing the schema does not know.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import pino from 'pino';
import { create } from '@bufbuild/protobuf';
import { CaptureAudioFrameRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiRequest, FfiResponse } from '../broker/livekit_schema.js';
import { HandleRegistry } from '../broker/handle_registry.js';
import { HostPolicy } from '../broker/host_policy.js';
import { NativeShim } from '../broker/native/shim.js';
import { OutputMemory } from '../broker/output_memory.js';
import { RequestExecutor } from '../broker/request_executor.js';
import type { FfiLibrary } from '../broker/native/ffi_library.js';
import { RequestSchema } from '../proto/gen/ffi_broker_pb.js';
import { audioBuffer } from '../client/media.js';

const varint = (v: number) => {
  const out: number[] = [];
  for (; v >= 0x80; v = Math.floor(v / 128)) out.push((v % 128) | 0x80);
  return Buffer.from([...out, v]);
};
const CAPTURE_FIELD = (FfiRequest as unknown as { fields: { find(no: number): unknown; list(): { no: number; localName: string }[] } }).fields.list().find((f) => f.localName === 'captureAudioFrame')!.no;
const unknownFields = (m: unknown) => (FfiRequest as unknown as { runtime: { bin: { listUnknownFields(m: unknown): readonly unknown[] } } }).runtime.bin.listUnknownFields(m);

function executorWithRecorder() {
  const seen: Uint8Array[] = [];
  const library = {
    request(bytes: Uint8Array) {
      seen.push(Uint8Array.from(bytes));
      const asyncId = (FfiRequest.fromBinary(bytes).message.value as CaptureAudioFrameRequest).requestAsyncId ?? 1n;
      return Buffer.from(new FfiResponse({ message: { case: 'captureAudioFrame', value: { asyncId } } }).toBinary());
    },
    dropHandle: () => true,
  } as unknown as FfiLibrary;
  const shim = new NativeShim();
  const registry = new HandleRegistry<{ id: string }>();
  const log = pino({ level: 'silent' });
  const output = new OutputMemory(library, shim, registry, log, () => {});
  const policy = new HostPolicy({ audioPluginDir: undefined, sharedDir: undefined, allowPlatformAudio: false }, log);
  return { seen, registry, executor: new RequestExecutor(library, shim, registry, output, policy, 1 << 20) };
}

test('a capture reaches the library with the broker\'s pointer and async id, without the unknown fields it was sent with, and the answer carries the worker\'s id', () => {
  const { seen, registry, executor } = executorWithRecorder();
  const owner = { id: 'session-1' };
  registry.own(owner, 5n, 'livekit.proto.OwnedAudioSource');
  const [ptr, data] = audioBuffer(new Int16Array(480));
  const request = new CaptureAudioFrameRequest({ sourceHandle: 5n, buffer: { dataPtr: ptr, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }, requestAsyncId: 77n });
  // Field 999 inside the request and 1000 at the top: a worker with another schema, or a hostile one.
  const inner = Buffer.concat([request.toBinary(), varint(999 << 3), varint(1)]);
  const ffiRequest = Buffer.concat([varint((CAPTURE_FIELD << 3) | 2), varint(inner.length), inner, varint(1000 << 3), varint(7)]);
  assert.equal(unknownFields(FfiRequest.fromBinary(ffiRequest)).length, 1, 'the bytes sent carry an unknown field');

  const { response } = executor.execute(owner, create(RequestSchema, { requestId: 1n, ffiRequest, buffers: [{ ptr, data }] }));
  assert.equal(response.error, undefined, response.error?.message);
  assert.equal(seen.length, 1);
  const reached = FfiRequest.fromBinary(seen[0]!);
  assert.equal(unknownFields(reached).length, 0, 'no unknown field at the top reached the library');
  const capture = reached.message.value as CaptureAudioFrameRequest;
  assert.equal(unknownFields(capture).length, 0, 'nor a nested one');
  assert.equal(capture.sourceHandle, 5n);
  assert.notEqual(capture.buffer!.dataPtr, ptr, 'the pointer is the broker\'s copy, not the worker\'s address');
  assert.ok(capture.requestAsyncId !== undefined && capture.requestAsyncId !== 77n, 'the async id is the broker\'s');
  const answer = FfiResponse.fromBinary(response.ffiResponse).message.value as { asyncId: bigint };
  assert.equal(answer.asyncId, 77n, 'the response names the id the worker chose');
});
