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
import { AudioFrameBufferInfo, AudioSourceType, AudioStreamType, CaptureAudioFrameRequest, NewAudioSourceRequest, NewAudioStreamRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import type { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { CreateAudioTrackRequest, CreateVideoTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { NewVideoSourceRequest, NewVideoStreamRequest, VideoSourceResolution, VideoSourceType, VideoStreamType } from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';
import { audioBuffer } from '../client/media.js';
import { expectAbortRefusal, ffi } from './helpers/assertions.js';
import { WORKERS, brokerForFile, waitFor } from './helpers/processes.js';

const shared = brokerForFile();

/** What the library itself does with the values: 'survived', or the signal that ended it. */
function library(scenario: string, ...values: number[]): string {
  const run = spawnSync(process.execPath, [path.join(WORKERS, 'raw_library.js'), scenario, ...values.map(String)], { encoding: 'utf8', timeout: 60_000 });
  if (run.signal !== null) return run.signal;
  assert.equal(run.status, 0, `raw_library ${scenario} ${values.join(' ')}: ${run.stderr}`);
  assert.match(run.stdout, /survived/);
  return 'survived';
}

/** The broker passes the request to the library, which answers it; the handle made is released. */
async function accepted(message: FfiRequest['message']): Promise<bigint> {
  const { response } = await shared.client.request(ffi(message));
  assert.equal(response.message.case, message.case, `${message.case} answered by the library`);
  const value = response.message.value as unknown as Record<string, { handle?: { id?: bigint } } | undefined>;
  const owned = Object.values(value).find((v) => v?.handle?.id !== undefined);
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
