// Loads liblivekit_ffi directly, as the broker does but with no guard in front, and sends one
// scenario's requests with the values on the command line: the evidence of where the library itself
// aborts. It prints "survived" and exits 0 when the library took them; an abort ends it by SIGABRT
// (or SIGFPE). Usage: raw_library SCENARIO N...
import { ApmProcessStreamRequest, AudioFrameBufferInfo, AudioSourceType, AudioStreamType, CaptureAudioFrameRequest, NewApmRequest, NewAudioResamplerRequest, NewAudioSourceRequest, NewAudioStreamRequest, NewSoxResamplerRequest, PushSoxResamplerRequest, RemixAndResampleRequest, SoxQualityRecipe, SoxResamplerDataType } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiRequest, FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { CreateAudioTrackRequest, CreateVideoTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { CaptureVideoFrameRequest, NewVideoSourceRequest, NewVideoStreamRequest, VideoBufferType, VideoSourceResolution, VideoSourceType, VideoStreamType } from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';
import { videoFrameBuffer } from '../../client/video.js';
import { DEFAULT_SDK } from '../../broker/config.js';
import { FfiLibrary, locateLibrary } from '../../broker/native/ffi_library.js';
import { NativeShim } from '../../broker/native/shim.js';

const shim = new NativeShim();
const library = new FfiLibrary(locateLibrary(undefined), shim, DEFAULT_SDK);
/** Native memory holding `samples` 16-bit samples of value 1000 (never freed: the process is short). */
const samples = (count: number): bigint => shim.allocCopy(new Uint8Array(new Int16Array(Math.max(count, 1)).fill(1000).buffer));

function send(message: FfiRequest['message']): FfiResponse['message'] {
  const bytes = library.request(new FfiRequest({ message }).toBinary());
  if (bytes === null) throw new Error(`the library returned no response to ${message.case}`);
  return FfiResponse.fromBinary(bytes).message;
}

/** The handle of the Owned* a response holds, directly or in its oneof. */
function handleOf(message: FfiResponse['message']): bigint {
  const owned = Object.values(message.value ?? {}).find((v) => typeof v === 'object' && v !== null && 'handle' in v) as { handle: { id: bigint } } | undefined;
  const inner = (message.value as { message?: { value?: { handle?: { id: bigint } } } } | undefined)?.message?.value?.handle;
  return owned?.handle.id ?? inner!.id;
}

const audioSource = (sampleRate: number, numChannels: number): bigint =>
  handleOf(send({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate, numChannels, queueSizeMs: 1000 }) }));
const audioTrack = (sourceHandle = audioSource(48000, 1)): bigint => handleOf(send({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 'a', sourceHandle }) }));
const videoSource = (width: number, height: number): bigint =>
  handleOf(send({ case: 'newVideoSource', value: new NewVideoSourceRequest({ type: VideoSourceType.VIDEO_SOURCE_NATIVE, resolution: new VideoSourceResolution({ width, height }) }) }));
const videoTrack = (sourceHandle = videoSource(64, 64)): bigint => handleOf(send({ case: 'createVideoTrack', value: new CreateVideoTrackRequest({ name: 'v', sourceHandle }) }));

const [scenario, ...args] = process.argv.slice(2);
const n = args.map(Number);
switch (scenario) {
  case 'source-stream': {
    // sample_rate num_channels stream_rate stream_channels: a second of captured audio through a stream
    const [rate, channels, streamRate, streamChannels] = n as [number, number, number, number];
    const source = audioSource(rate, channels);
    send({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: audioTrack(source), type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: streamRate, numChannels: streamChannels }) });
    const perChunk = Math.floor(rate / 100);
    const data = samples(perChunk * channels);
    for (let i = 0; i < 10; i++) send({ case: 'captureAudioFrame', value: new CaptureAudioFrameRequest({ sourceHandle: source, buffer: new AudioFrameBufferInfo({ dataPtr: data, numChannels: channels, sampleRate: rate, samplesPerChannel: perChunk }) }) });
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1000); // the source's 10 ms task runs meanwhile
    break;
  }
  case 'video-capture': {
    // source_width source_height frame_width frame_height: I420 frames captured into a source a stream listens to
    const [sw, sh, fw, fh] = n as [number, number, number, number];
    const source = videoSource(sw, sh);
    send({ case: 'newVideoStream', value: new NewVideoStreamRequest({ trackHandle: videoTrack(source), type: VideoStreamType.VIDEO_STREAM_NATIVE }) });
    const frame = videoFrameBuffer(VideoBufferType.I420, fw, fh, new Uint8Array(fw * fh + 2 * Math.ceil(fw / 2) * Math.ceil(fh / 2)).fill(90));
    // The frame's pointers are the worker's Buffer; the library reads native memory at those addresses.
    const [[ptr, bytes]] = frame.buffers;
    const native = shim.allocCopy(bytes);
    frame.info.dataPtr = native;
    for (const c of frame.info.components) c.dataPtr = native + (c.dataPtr! - ptr);
    for (let i = 0; i < 3; i++) send({ case: 'captureVideoFrame', value: new CaptureVideoFrameRequest({ sourceHandle: source, buffer: frame.info, timestampUs: BigInt(i * 33_000), rotation: 0 }) });
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 500);
    break;
  }
  case 'remix': {
    // input_rate input_channels samples_per_channel output_rate output_channels
    const [inRate, inChannels, perChannel, outRate, outChannels] = n as [number, number, number, number, number];
    const resampler = handleOf(send({ case: 'newAudioResampler', value: new NewAudioResamplerRequest({}) }));
    const buffer = new AudioFrameBufferInfo({ dataPtr: samples(perChannel * inChannels), numChannels: inChannels, sampleRate: inRate, samplesPerChannel: perChannel });
    send({ case: 'remixAndResample', value: new RemixAndResampleRequest({ resamplerHandle: resampler, buffer, sampleRate: outRate, numChannels: outChannels }) });
    break;
  }
  case 'sox': {
    // input_rate output_rate num_channels samples_per_channel (pushed once)
    const [inputRate, outputRate, numChannels, perChannel] = n as [number, number, number, number];
    const created = send({ case: 'newSoxResampler', value: new NewSoxResamplerRequest({ inputRate, outputRate, numChannels, inputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I, outputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I, qualityRecipe: SoxQualityRecipe.SOXR_QUALITY_MEDIUM, flags: 0 }) });
    const size = perChannel * Math.max(numChannels, 1) * 2;
    send({ case: 'pushSoxResampler', value: new PushSoxResamplerRequest({ resamplerHandle: handleOf(created), dataPtr: samples(size / 2), size }) });
    break;
  }
  case 'apm': {
    // sample_rate num_channels size (bytes)
    const apm = handleOf(send({ case: 'newApm', value: new NewApmRequest({ echoCancellerEnabled: true, gainControllerEnabled: true, highPassFilterEnabled: true, noiseSuppressionEnabled: true }) }));
    send({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: samples(n[2]! / 2), size: n[2], sampleRate: n[0], numChannels: n[1] }) });
    break;
  }
  case 'audio-source': // sample_rate num_channels queue_size_ms
    send({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: n[0], numChannels: n[1], queueSizeMs: n[2] }) });
    break;
  case 'audio-stream': // queue_size_frames
    send({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: audioTrack(), type: AudioStreamType.AUDIO_STREAM_NATIVE, queueSizeFrames: n[0] }) });
    break;
  case 'video-stream': // queue_size_frames
    send({ case: 'newVideoStream', value: new NewVideoStreamRequest({ trackHandle: videoTrack(), type: VideoStreamType.VIDEO_STREAM_NATIVE, queueSizeFrames: n[0] }) });
    break;
  default:
    throw new Error(`unknown scenario ${scenario}`);
}
process.stdout.write('survived\n');
process.exit(0);
