// Each value guard sits at the library's own threshold (issue 12, item 9: never refuse what the
// library accepts). For each: just past the threshold the library itself aborts (a child process
// loading it with no broker in front, test/workers/raw_library.ts); at the threshold the broker
// passes the request and the library does the work; past it the broker answers INVALID_REQUEST
// naming the value and the limit, and goes on serving.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ApmProcessStreamRequest, AudioFrameBufferInfo, AudioSourceType, AudioStreamType, CaptureAudioFrameRequest, NewApmRequest, NewAudioResamplerRequest, NewAudioSourceRequest, NewAudioStreamRequest, NewSoxResamplerRequest, PushSoxResamplerRequest, RemixAndResampleRequest, SoxQualityRecipe, SoxResamplerDataType } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import type { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { CreateAudioTrackRequest, CreateVideoTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { CaptureVideoFrameRequest, NewVideoSourceRequest, NewVideoStreamRequest, VideoBufferType, VideoSourceResolution, VideoSourceType, VideoStreamType } from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';
import { videoFrameBuffer } from '../client/video.js';
import { audioBuffer } from '../client/media.js';
import { BrokerClient } from '../client/broker_client.js';
import { Error_Code } from '../proto/gen/ffi_broker_pb.js';
import { expectAbortRefusal, expectRefusal, ffi } from './helpers/assertions.js';
import { WORKERS, brokerForFile, startBroker, waitFor } from './helpers/processes.js';

const shared = brokerForFile();

/** What the library itself does with the values: 'survived', or the signal that ended it. */
function library(scenario: string, ...values: number[]): string {
  const run = spawnSync(process.execPath, [path.join(WORKERS, 'raw_library.js'), scenario, ...values.map(String)], { encoding: 'utf8', timeout: 60_000 });
  if (run.signal !== null) return run.signal;
  assert.equal(run.status, 0, `raw_library ${scenario} ${values.join(' ')}: ${run.stderr}`);
  assert.match(run.stdout, /survived/);
  return 'survived';
}

/** The broker passes the request to the library, which answers it; returns the handle it made. */
async function accepted(message: FfiRequest['message']): Promise<bigint> {
  const { response } = await shared.client.request(ffi(message));
  assert.equal(response.message.case, message.case, `${message.case} answered by the library`);
  type Owned = { handle?: { id?: bigint } } | undefined;
  const value = response.message.value as unknown as Record<string, Owned>;
  // Most responses hold their Owned* directly; some (NewSoxResamplerResponse) in a oneof.
  const oneof = (value.message as { value?: Owned } | undefined)?.value;
  const owned = Object.values(value).find((v) => v?.handle?.id !== undefined) ?? oneof;
  return owned!.handle!.id!;
}

const refused = (message: FfiRequest['message'], why: RegExp) => expectAbortRefusal(shared.client.request(ffi(message)), why);

const source = (sampleRate: number, numChannels: number, queueSizeMs: number) =>
  ({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate, numChannels, queueSizeMs }) }) as const;

test('audio source queue: at 48 kHz mono 22,369,620 ms (2 × 1,073,741,760 samples) works, 22,369,630 ms overflows the C++ int and aborts', async () => {
  assert.equal(library('audio-source', 48000, 1, 22_369_620), 'survived');
  assert.equal(library('audio-source', 48000, 1, 22_369_630), 'SIGABRT');
  await shared.client.dropHandles([await accepted(source(48000, 1, 22_369_620))]);
  await refused(source(48000, 1, 22_369_630), /queue_size_ms 22369630 at 48000 Hz × 1 channels is 1073742240 samples; .* overflows past 2147483647/);
});

test('audio source values the library takes as i32: 2^31 − 1 works, 2^31 aborts; queue_size_ms must be a multiple of 10', async () => {
  assert.equal(library('audio-source', 2 ** 31 - 1, 1, 0), 'survived');
  assert.equal(library('audio-source', 2 ** 31, 1, 0), 'SIGABRT');
  assert.equal(library('audio-source', 48000, 1, 1005), 'SIGABRT');
  await shared.client.dropHandles([await accepted(source(2 ** 31 - 1, 1, 0)), await accepted(source(48000, 1, 1010))]);
  await refused(source(2 ** 31, 1, 0), /sample_rate 2147483648 is over 2\^31 − 1/);
  await refused(source(48000, 1, 1005), /queue_size_ms 1005 is not a multiple of 10/);
  // Once refused as below 100 Hz or over 7680 samples per 10 ms, all of them work in the library.
  for (const [rate, channels] of [[50, 1], [0, 1], [384_000, 3], [48_000, 1000]] as const) await shared.client.dropHandles([await accepted(source(rate, channels, 1000))]);
});

test('queue_size_ms 100000 (livekit-agents 1.0.0): frames captured through the source reach a stream', async () => {
  const src = await accepted(source(48000, 1, 100_000));
  const track = await accepted({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 'agent', sourceHandle: src }) });
  const stream = await accepted({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: track, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: 48000, numChannels: 1 }) });
  let heard = 0;
  const listener = ({ event, buffers }: { event: { message: { case?: string; value?: unknown } }; buffers: Map<bigint, Uint8Array> }) => {
    if (event.message.case !== 'audioStreamEvent') return;
    const m = (event.message.value as { streamHandle: bigint; message: { case?: string; value?: { frame?: { info?: { dataPtr?: bigint } } } } });
    if (m.streamHandle !== stream || m.message.case !== 'frameReceived') return;
    const bytes = buffers.get(m.message.value!.frame!.info!.dataPtr!)!;
    if (new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2).some((s) => s === 1234)) heard++;
  };
  shared.client.on('event', listener);
  try {
    const [ptr, bytes] = audioBuffer(new Int16Array(480).fill(1234));
    for (let i = 0; i < 20; i++) {
      const { response } = await shared.client.request(ffi({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: src, buffer: new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 1, sampleRate: 48000, samplesPerChannel: 480 }) }) }), [[ptr, bytes]]);
      assert.equal(response.message.case, 'captureAudioFrame');
    }
    await waitFor(() => heard >= 20, 10_000, `the 20 captured frames on the stream (heard ${heard})`);
  } finally {
    shared.client.off('event', listener);
    await shared.client.dropHandles([stream, track, src]);
  }
});

// The kernel's limit on one allocation in vm.overcommit_memory mode 0 (this project's machines):
// RAM and swap together (host_memory.ts).
const overcommit = fs.readFileSync('/proc/sys/vm/overcommit_memory', 'utf8').trim();
const meminfo = fs.readFileSync('/proc/meminfo', 'utf8');
const kB = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(meminfo)![1]) * 1024;
const hostBytes = kB('MemTotal') + kB('SwapTotal');

for (const [kind, slot] of [['audio', 40], ['video', 80]] as const) {
  test(`${kind} stream queue: ${slot} bytes a frame, allocated up front, up to what the kernel grants one allocation`, { skip: overcommit !== '0' && 'vm.overcommit_memory is not 0' }, async () => {
    const last = Math.floor((hostBytes - 4096) / slot); // the broker's limit: one page of room for the allocator
    // The kernel's own line lies a few pages past RAM + swap (measured: video from 71,072 bytes past
    // it), so the library is shown aborting 1 MiB past; the broker refuses from RAM + swap − 1 page.
    const over = Math.floor((hostBytes + 2 ** 20) / slot);
    assert.equal(library(`${kind}-stream`, last), 'survived');
    assert.equal(library(`${kind}-stream`, over), 'SIGABRT');
    const track =
      kind === 'audio'
        ? await accepted({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 'a', sourceHandle: await accepted(source(48000, 1, 1000)) }) })
        : await accepted({ case: 'createVideoTrack', value: new CreateVideoTrackRequest({ name: 'v', sourceHandle: await accepted({ case: 'newVideoSource', value: new NewVideoSourceRequest({ type: VideoSourceType.VIDEO_SOURCE_NATIVE, resolution: new VideoSourceResolution({ width: 64, height: 64 }) }) }) }) });
    const stream = (queueSizeFrames: number): FfiRequest['message'] =>
      kind === 'audio'
        ? { case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: track, type: AudioStreamType.AUDIO_STREAM_NATIVE, queueSizeFrames }) }
        : { case: 'newVideoStream', value: new NewVideoStreamRequest({ trackHandle: track, type: VideoStreamType.VIDEO_STREAM_NATIVE, queueSizeFrames }) };
    await shared.client.dropHandles([await accepted(stream(last))]);
    await refused(stream(last + 1), new RegExp(`queue_size_frames ${last + 1} \\(${slot} bytes each\\) would reserve ${(last + 1) * slot} bytes, more than this host's kernel grants one allocation \\(${hostBytes} bytes\\)`));
    await refused(stream(over), /more than this host's kernel grants one allocation/);
    assert.equal(shared.broker.proc.exitCode, null);
  });
}

/** A source of `rate` × `channels` with a track and a stream of `streamRate` × `streamChannels`, through the broker. */
async function sourceStream(rate: number, channels: number, streamRate: number, streamChannels: number): Promise<FfiRequest['message']> {
  const src = await accepted(source(rate, channels, 1000));
  const track = await accepted({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 's', sourceHandle: src }) });
  return { case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: track, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: streamRate, numChannels: streamChannels }) };
}

test("audio sources: WebRTC's resampler needs 16 samples per 10 ms (1600 Hz works streamed at 48 kHz, 1500 Hz aborts); below 100 Hz chunks are empty and work", async () => {
  assert.equal(library('source-stream', 1600, 1, 48000, 1), 'survived');
  assert.equal(library('source-stream', 1500, 1, 48000, 1), 'SIGABRT');
  assert.equal(library('source-stream', 50, 1, 48000, 1), 'survived');
  await shared.client.dropHandles([await accepted(await sourceStream(1600, 1, 48000, 1)), await accepted(source(50, 1, 1000))]);
  await refused(source(1500, 1, 1000), /sample_rate 1500 gives 15 samples per 10 ms; WebRTC's resampler needs at least 16/);
});

test("audio sources: downmixed into WebRTC's 7680-sample buffer (768 kHz stereo and 384 kHz quad work, 1536 kHz stereo and 768 kHz quad crash)", async () => {
  assert.equal(library('source-stream', 768_000, 2, 48000, 1), 'survived');
  assert.equal(library('source-stream', 1_536_000, 2, 48000, 1), 'SIGSEGV');
  assert.equal(library('source-stream', 384_000, 4, 48000, 2), 'survived');
  assert.equal(library('source-stream', 768_000, 4, 48000, 2), 'SIGSEGV');
  await shared.client.dropHandles([await accepted(await sourceStream(768_000, 2, 48000, 1)), await accepted(await sourceStream(384_000, 4, 48000, 2))]);
  await refused(source(768_100, 2, 1000), /768100 Hz × 2 channels: downmixing it .* overruns WebRTC's 7680-sample buffer/);
  await refused(source(384_100, 4, 1000), /384100 Hz × 4 channels: downmixing/);
});

test('audio streams: at most 7680 samples per 10 ms (768 kHz mono works, 768.1 kHz aborts); no channels and rates below 100 Hz work', async () => {
  assert.equal(library('source-stream', 48000, 1, 768_000, 1), 'survived');
  assert.equal(library('source-stream', 48000, 1, 768_100, 1), 'SIGABRT');
  assert.equal(library('source-stream', 48000, 1, 50, 0), 'survived');
  await shared.client.dropHandles([await accepted(await sourceStream(48000, 1, 768_000, 1)), await accepted(await sourceStream(48000, 1, 50, 0))]);
  await refused(await sourceStream(48000, 1, 768_100, 1), /768100 Hz × 1 channels exceeds 7680 samples per 10 ms/);
});

test('RemixAndResample: input chunks of 16+ samples, output frames and downmixes within 7680 samples, output channels ≥ 1', async () => {
  const cases: [number[], string][] = [
    [[1600, 1, 16, 48000, 1], 'survived'],
    [[1500, 1, 15, 48000, 1], 'SIGABRT'],
    [[48000, 1, 480, 768_000, 1], 'survived'],
    [[48000, 1, 480, 768_100, 1], 'SIGABRT'],
    [[48000, 1, 480, 384_000, 3], 'survived'], // a mono input keeps one channel: 3840 samples
    [[768_000, 2, 7680, 48000, 1], 'survived'],
    [[1_536_000, 2, 15360, 48000, 1], 'SIGSEGV'],
    [[48000, 1, 480, 16000, 0], 'SIGABRT'],
  ];
  for (const [values, verdict] of cases) assert.equal(library('remix', ...values), verdict, `remix ${values.join(' ')}`);
  const resampler = await accepted({ case: 'newAudioResampler', value: new NewAudioResamplerRequest({}) });
  const remix = (inRate: number, inChannels: number, perChannel: number, sampleRate: number, numChannels: number) => {
    const [ptr, bytes] = audioBuffer(new Int16Array(perChannel * inChannels).fill(1000));
    const message = { case: 'remixAndResample', value: new RemixAndResampleRequest({ resamplerHandle: resampler, buffer: new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: inChannels, sampleRate: inRate, samplesPerChannel: perChannel }), sampleRate, numChannels }) } as const;
    return { message, buffers: [[ptr, bytes]] as [bigint, Uint8Array][] };
  };
  const works: [number, number, number, number, number][] = [[1600, 1, 16, 48000, 1], [48000, 1, 480, 768_000, 1], [48000, 1, 480, 384_000, 3], [768_000, 2, 7680, 48000, 1], [48000, 1, 480, 50, 1]];
  for (const values of works) {
    const { message, buffers } = remix(...values);
    const { response } = await shared.client.request(ffi(message), buffers);
    assert.equal(response.message.case, 'remixAndResample', `remix ${values.join(' ')}`);
  }
  const refusedRemix = (values: [number, number, number, number, number], why: RegExp) => {
    const { message, buffers } = remix(...values);
    return expectAbortRefusal(shared.client.request(ffi(message), buffers), why);
  };
  await refusedRemix([1500, 1, 15, 48000, 1], /buffer.sample_rate 1500 gives 15 samples per 10 ms/);
  await refusedRemix([48000, 1, 480, 768_100, 1], /768100 Hz × 1 channels exceeds 7680/);
  await refusedRemix([768_100, 2, 7681, 48000, 1], /downmixing 7681 samples × 2 channels to 1 overruns/);
  await refusedRemix([48000, 1, 480, 16000, 0], /num_channels 0 is below 1/);
});

test('APM: no upper bound (48 kHz × 100 channels works); below 100 Hz divides by zero', async () => {
  assert.equal(library('apm', 100, 1, 2), 'survived');
  assert.equal(library('apm', 50, 1, 2), 'SIGABRT');
  assert.equal(library('apm', 48000, 100, 96_000), 'survived');
  const apm = await accepted({ case: 'newApm', value: new NewApmRequest({ echoCancellerEnabled: true, gainControllerEnabled: true, highPassFilterEnabled: true, noiseSuppressionEnabled: true }) });
  const process = (sampleRate: number, numChannels: number, size: number) => {
    const [ptr, bytes] = audioBuffer(new Int16Array(size / 2).fill(1000));
    return shared.client.request(ffi({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: ptr, size, sampleRate, numChannels }) }), [[ptr, bytes]]);
  };
  assert.equal((await process(100, 1, 2)).response.message.case, 'apmProcessStream');
  assert.equal((await process(48000, 100, 96_000)).response.message.case, 'apmProcessStream');
  await expectAbortRefusal(process(50, 1, 2), /sample_rate 50 is below 100 Hz/);
});

const soxRequest = (inputRate: number, outputRate: number, numChannels: number) =>
  ({
    case: 'newSoxResampler',
    value: new NewSoxResamplerRequest({ inputRate, outputRate, numChannels, inputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I, outputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I, qualityRecipe: SoxQualityRecipe.SOXR_QUALITY_MEDIUM, flags: 0 }),
  }) as const;

test('sox resampler: any finite rate, 1 to 8192 channels (0 divides by zero on the first push, 65,536 crashes it)', async () => {
  for (const values of [[10, 16000, 1, 480], [8000, 384_000, 1, 480], [48000, 16000, 8192, 480], [0, 16000, 1, 480]] as const) assert.equal(library('sox', ...values), 'survived', `sox ${values.join(' ')}`);
  assert.equal(library('sox', 48000, 16000, 0, 480), 'SIGABRT');
  assert.equal(library('sox', 48000, 16000, 65_536, 0), 'SIGSEGV');
  await refused(soxRequest(48000, 16000, 8193), /num_channels 8193 is over 8192/);
  // Once refused: rates below 1000 Hz, ratios over 16, more than 32 channels; rate 0 gets the library's error.
  for (const [input, output, channels] of [[10, 16000, 1], [8000, 384_000, 1], [48000, 16000, 8192], [0, 16000, 1]] as const) await shared.client.dropHandles([await accepted(soxRequest(input, output, channels))]);
  await refused(soxRequest(48000, 16000, 0), /num_channels 0 is below 1/);
  // The widest resampler takes a push through the broker.
  const wide = await accepted(soxRequest(48000, 16000, 8192));
  const [ptr, bytes] = audioBuffer(new Int16Array(8192).fill(1000));
  const pushed = await shared.client.request(ffi({ case: 'pushSoxResampler', value: new PushSoxResamplerRequest({ resamplerHandle: wide, dataPtr: ptr, size: bytes.length }) }), [[ptr, bytes]]);
  assert.equal(pushed.response.message.case, 'pushSoxResampler');
  assert.equal(pushed.response.message.value.error, undefined);
  await shared.client.dropHandles([wide]);
});

test("sox pushes: the output must fit one message (with --max-message-size 1MiB, 5222 samples at 48 → 4800 kHz do, 5223 don't)", async () => {
  // (ceil(samples × 100) + 1) × 2 bytes + 4096 of room ≤ 1 MiB: 5222 samples come back as up to 1,044,402 bytes.
  const broker = await startBroker(['--max-message-size', '1MiB']);
  const client = await BrokerClient.connect(broker.address);
  try {
    const { response } = await client.request(ffi(soxRequest(48000, 4_800_000, 1)));
    assert.equal(response.message.case, 'newSoxResampler');
    const resampler = (response.message.value.message.value as { handle: { id: bigint } }).handle.id;
    const push = (count: number) => {
      const [ptr, bytes] = audioBuffer(new Int16Array(count).fill(1000));
      return client.request(ffi({ case: 'pushSoxResampler', value: new PushSoxResamplerRequest({ resamplerHandle: resampler, dataPtr: ptr, size: count * 2 }) }), [[ptr, bytes]]);
    };
    const pushed = await push(5222);
    assert.equal(pushed.response.message.case, 'pushSoxResampler');
    assert.ok((pushed.response.message.value.size ?? 0) > 0, 'the library resampled it');
    await expectRefusal(push(5223), Error_Code.INVALID_REQUEST, /size 10446 bytes resampled by 100 comes back as about 1044602 bytes, over the 1048576-byte message limit; push less at a time/);
  } finally {
    await client.close();
    assert.equal(await broker.stop(), 0);
  }
});

const videoSource = (width: number, height: number) =>
  ({ case: 'newVideoSource', value: new NewVideoSourceRequest({ type: VideoSourceType.VIDEO_SOURCE_NATIVE, resolution: new VideoSourceResolution({ width, height }) }) }) as const;

test('video sources: 1×1 up to an I420 frame of 2^31 − 1 bytes (37,836² works, 37,837² aborts); captured frames from 4×4 (3×3 aborts), whatever the source', async () => {
  assert.equal(library('video-capture', 64, 64, 4, 4), 'survived');
  assert.equal(library('video-capture', 64, 64, 3, 3), 'SIGABRT');
  assert.equal(library('video-capture', 1, 1, 1000, 4), 'survived');
  assert.equal(library('video-capture', 0, 1, 64, 64), 'SIGABRT');
  assert.equal(library('video-capture', 37_836, 37_836, 64, 64), 'survived');
  assert.equal(library('video-capture', 37_837, 37_837, 64, 64), 'SIGABRT');
  // Once refused as below 16×16 or over a 16:1 aspect ratio.
  const tiny = await accepted(videoSource(1, 1));
  await shared.client.dropHandles([await accepted(videoSource(1600, 16))]);
  await refused(videoSource(37_837, 37_837), /resolution 37837×37837 makes an I420 frame of 2147495691 bytes, over 2\^31 − 1/);
  await refused(videoSource(0, 1), /resolution 0×1 has a side of 0/);
  const capture = (width: number, height: number) => {
    const frame = videoFrameBuffer(VideoBufferType.I420, width, height, new Uint8Array(width * height + 2 * Math.ceil(width / 2) * Math.ceil(height / 2)));
    return shared.client.request(ffi({ case: 'captureVideoFrame', value: new CaptureVideoFrameRequest({ sourceHandle: tiny, buffer: frame.info, timestampUs: 0n, rotation: 0 }) }), frame.buffers);
  };
  for (const [w, h] of [[4, 4], [1000, 4]] as const) assert.equal((await capture(w, h)).response.message.case, 'captureVideoFrame', `${w}×${h}`);
  await expectRefusal(capture(4, 3), Error_Code.INVALID_REQUEST, /width × height = 4×3: captured frames must be at least 4×4/);
  await shared.client.dropHandles([tiny]);
  assert.equal(shared.broker.proc.exitCode, null);
});
