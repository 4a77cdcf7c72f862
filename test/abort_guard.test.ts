// liblivekit_ffi is built with panic = "abort": these requests, each seen to kill a process that
// loads it, must be refused by the broker, which then goes on serving. One broker for all: if one
// got through, the broker would die and every later case would fail.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import {
  ApmProcessReverseStreamRequest,
  ApmProcessStreamRequest,
  AudioFrameBufferInfo,
  NewApmRequest,
  NewAudioResamplerRequest,
  NewAudioSourceRequest,
  NewAudioStreamRequest,
  AudioSourceType,
  AudioStreamType,
  NewSoxResamplerRequest,
  RemixAndResampleRequest,
  SoxQualityRecipe,
  SoxResamplerDataType,
} from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { CreateAudioTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { CaptureVideoFrameRequest, NewVideoSourceRequest, VideoBufferType, VideoConvertRequest, VideoSourceResolution, VideoSourceType } from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';
import { videoFrameBuffer } from '../client/video.js';
import { BrokerClient } from '../client/broker_client.js';
import { audioBuffer } from '../client/media.js';
import { Error_Code } from '../proto/gen/ffi_broker_pb.js';
import { startBroker, type BrokerProcess } from './helpers/processes.js';
import { expectAbortRefusal, expectRefusal, ffi } from './helpers/assertions.js';

let broker: BrokerProcess;
let client: BrokerClient;
let apm: bigint;
let resampler: bigint;

before(async () => {
  broker = await startBroker();
  client = await BrokerClient.connect(broker.address);
  const a = await client.request(ffi({ case: 'newApm', value: new NewApmRequest({ echoCancellerEnabled: false, gainControllerEnabled: false, highPassFilterEnabled: true, noiseSuppressionEnabled: false }) }));
  assert.equal(a.response.message.case, 'newApm');
  apm = a.response.message.value.apm!.handle!.id!;
  const r = await client.request(ffi({ case: 'newAudioResampler', value: new NewAudioResamplerRequest({}) }));
  assert.equal(r.response.message.case, 'newAudioResampler');
  resampler = r.response.message.value.resampler!.handle!.id!;
});
after(async () => {
  await client.close();
  assert.equal(await broker.stop(), 0);
});

const refused = (message: FfiRequest['message'], why: RegExp) => expectAbortRefusal(client.request(ffi(message)), why);

const apmStream = (size: number, sampleRate: number, numChannels: number) =>
  ({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: 0x1000n, size, sampleRate, numChannels }) }) as const;

test('APM: chunks that are not whole 10 ms, rates below 100 Hz, no channels', async () => {
  await refused(apmStream(480, 48000, 1), /not a whole number of 10 ms chunks \(960 bytes each\)/);
  await refused(apmStream(0, 48000, 1), /size 0 bytes/);
  await refused(apmStream(960, 12345, 1), /not a whole number/);
  await refused(apmStream(960, 50, 1), /sample_rate 50 is below 100/);
  await refused(apmStream(960, 48000, 0), /num_channels 0 is below 1/);
  await refused({ case: 'apmProcessReverseStream', value: new ApmProcessReverseStreamRequest({ apmHandle: apm, dataPtr: 0x1000n, size: 480, sampleRate: 48000, numChannels: 1 }) }, /10 ms/);
});

test('sox resampler without channels or with an unbounded rate; remix to no channels or beyond WebRTC buffers', async () => {
  const sox = (numChannels: number, inputRate: number) => ({
    case: 'newSoxResampler' as const,
    value: new NewSoxResamplerRequest({ inputRate, outputRate: 16000, numChannels, inputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I, outputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I, qualityRecipe: SoxQualityRecipe.SOXR_QUALITY_MEDIUM, flags: 0 }),
  });
  await refused(sox(0, 48000), /num_channels 0 is below 1: every push divides by it/);
  await refused({ ...sox(1, 48000), value: new NewSoxResamplerRequest({ ...sox(1, 48000).value, outputRate: Number.POSITIVE_INFINITY }) }, /must be finite/);
  // Found by test/reliability/fuzz.test.ts (long mode): the output buffer the library reserves at creation.
  await refused({ ...sox(1, 48000), value: new NewSoxResamplerRequest({ ...sox(1, 48000).value, outputRate: 1e30 }) }, /output_rate 1e\+30 would reserve .* bytes, more than this host's kernel grants/);
  const remix = (sampleRate: number, numChannels: number) => ({
    case: 'remixAndResample' as const,
    value: new RemixAndResampleRequest({ resamplerHandle: resampler, buffer: new AudioFrameBufferInfo({ dataPtr: 0x1000n, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }), sampleRate, numChannels }),
  });
  await refused(remix(16000, 0), /num_channels 0/);
  await refused(remix(1_000_000, 1), /exceeds 7680 samples per 10 ms/);
  // Found by test/reliability/fuzz.test.ts: a partial 10 ms chunk aborts, 0 samples hangs the call.
  const remixInput = (samplesPerChannel: number) => ({
    case: 'remixAndResample' as const,
    value: new RemixAndResampleRequest({ resamplerHandle: resampler, buffer: new AudioFrameBufferInfo({ dataPtr: 0x1000n, numChannels: 1, sampleRate: 48000, samplesPerChannel }), sampleRate: 16000, numChannels: 1 }),
  });
  await refused(remixInput(7), /samples_per_channel 7 is not a whole number of 10 ms chunks \(480 samples each\)/);
  await refused(remixInput(0), /samples_per_channel is 0/);
});

test('audio sources with a rate or queue the library cannot allocate (found by test/reliability/fuzz.test.ts)', async () => {
  const source = (sampleRate: number, numChannels: number, queueSizeMs: number) => ({ case: 'newAudioSource' as const, value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate, numChannels, queueSizeMs }) });
  await refused(source(1_847_138_908, 1, 1000), /queue_size_ms 1000 at 1847138908 Hz × 1 channels is 1847138900 samples/);
  await refused(source(48000, 0, 1000), /num_channels 0 is below 1/);
  await refused(source(48000, 1, 0xffffffff), /queue_size_ms 4294967295 is over 2\^31 − 1/);
  await refused(source(48000, 1, 1005), /queue_size_ms 1005 is not a multiple of 10/);
  await refused(source(48000, 1, 3), /not a multiple of 10/);
  for (const queue of [0, 10, 60_000, 100_000]) assert.equal((await client.request(ffi(source(48000, 2, queue)))).response.message.case, 'newAudioSource');
});

test('stream queues the library would allocate up front beyond memory (found by test/reliability/fuzz.test.ts)', async () => {
  // The ownership check comes first, so the track must be this session's.
  const src = await client.request(ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) }));
  assert.equal(src.response.message.case, 'newAudioSource');
  const trk = await client.request(ffi({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 't', sourceHandle: src.response.message.value.source!.handle!.id! }) }));
  assert.equal(trk.response.message.case, 'createAudioTrack');
  const track = trk.response.message.value.track!.handle!.id!;
  const stream = (queueSizeFrames: number) => ({ case: 'newAudioStream' as const, value: new NewAudioStreamRequest({ trackHandle: track, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeFrames }) });
  await refused(stream(0x7fffffff), /queue_size_frames 2147483647 \(40 bytes each\) would reserve 85899345880 bytes, more than this host's kernel grants/);
  assert.equal((await client.request(ffi(stream(100)))).response.message.case, 'newAudioStream');
});

test('video strides over 2^31 − 1, which the library unwraps into i32 (found by test/reliability/fuzz.test.ts)', async () => {
  const frame = videoFrameBuffer(VideoBufferType.I420, 32, 16, new Uint8Array(32 * 16 + 2 * 16 * 8));
  frame.info.stride = 0x80000000;
  const err = await expectRefusal(client.request(ffi({ case: 'videoConvert', value: new VideoConvertRequest({ buffer: frame.info, dstType: VideoBufferType.RGBA, flipY: false }) }), frame.buffers), Error_Code.INVALID_REQUEST, /buffer\.stride = 2147483648 is over 2\^31 − 1/);
  assert.match(err.message, /not sent to the library/);
});

test('captured frames thin enough to be adapted to 0 pixels (found by test/reliability/fuzz.test.ts), video sources of no or too many pixels', async () => {
  const source = (width: number, height: number) => ({ case: 'newVideoSource' as const, value: new NewVideoSourceRequest({ type: VideoSourceType.VIDEO_SOURCE_NATIVE, resolution: new VideoSourceResolution({ width, height }) }) });
  await refused(source(0, 8), /resolution 0×8 has a side of 0/);
  await refused(source(37_837, 37_837), /makes an I420 frame of 2147495691 bytes, over 2\^31 − 1/);
  const made = await client.request(ffi(source(32, 16)));
  assert.equal(made.response.message.case, 'newVideoSource');
  const sourceHandle = made.response.message.value.source!.handle!.id!;
  const thin = videoFrameBuffer(VideoBufferType.I420, 32, 3, new Uint8Array(32 * 3 + 2 * 16 * 2));
  const err = await expectRefusal(
    client.request(ffi({ case: 'captureVideoFrame', value: new CaptureVideoFrameRequest({ sourceHandle, buffer: thin.info, timestampUs: 0n, rotation: 0 }) }), thin.buffers),
    Error_Code.INVALID_REQUEST,
    /32×3: captured frames must be at least 4×4/,
  );
  assert.match(err.message, /not sent to the library/);
});

test('the same requests with sound values still work, and the broker is alive', async () => {
  const [ptr, bytes] = audioBuffer(new Int16Array(480).fill(100));
  const { response, buffers } = await client.request(ffi({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: ptr, size: 960, sampleRate: 48000, numChannels: 1 }) }), [[ptr, bytes]]);
  assert.equal(response.message.case, 'apmProcessStream');
  assert.equal(buffers.get(ptr)?.length, 960);
  // Once refused as over 7680 samples per 10 ms; the library processes it.
  const [wide, wideBytes] = audioBuffer(new Int16Array(48_000).fill(100));
  const processed = await client.request(ffi({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: wide, size: 96_000, sampleRate: 48000, numChannels: 100 }) }), [[wide, wideBytes]]);
  assert.equal(processed.response.message.case, 'apmProcessStream');
  const remixed = await client.request(
    ffi({ case: 'remixAndResample', value: new RemixAndResampleRequest({ resamplerHandle: resampler, buffer: new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }), sampleRate: 16000, numChannels: 1 }) }),
    [[ptr, bytes]],
  );
  assert.equal(remixed.response.message.case, 'remixAndResample');
  assert.equal(broker.proc.exitCode, null);
  assert.equal((await broker.info()).sessions.length, 1);
});
