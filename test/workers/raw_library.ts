// Loads liblivekit_ffi directly, as the broker does but with no guard in front, and sends one
// scenario's requests with the values on the command line: the evidence of where the library itself
// aborts. It prints "survived" and exits 0 when the library took them; an abort ends it by SIGABRT
// (or SIGFPE). Usage: raw_library SCENARIO N...
import { AudioSourceType, AudioStreamType, NewAudioSourceRequest, NewAudioStreamRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { FfiRequest, FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { CreateAudioTrackRequest, CreateVideoTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { NewVideoSourceRequest, NewVideoStreamRequest, VideoSourceResolution, VideoSourceType, VideoStreamType } from '@livekit/rtc-ffi-bindings/proto/video_frame_pb.js';
import { FfiLibrary, locateLibrary } from '../../broker/native/ffi_library.js';
import { NativeShim } from '../../broker/native/shim.js';

const library = new FfiLibrary(locateLibrary(undefined), new NativeShim(), '0.0.0');

function send(message: FfiRequest['message']): FfiResponse['message'] {
  const bytes = library.request(new FfiRequest({ message }).toBinary());
  if (bytes === null) throw new Error(`the library returned no response to ${message.case}`);
  return FfiResponse.fromBinary(bytes).message;
}

function audioTrack(): bigint {
  const source = send({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) });
  if (source.case !== 'newAudioSource') throw new Error('no audio source');
  const track = send({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: 'a', sourceHandle: source.value.source!.handle!.id! }) });
  if (track.case !== 'createAudioTrack') throw new Error('no audio track');
  return track.value.track!.handle!.id!;
}

function videoTrack(): bigint {
  const source = send({ case: 'newVideoSource', value: new NewVideoSourceRequest({ type: VideoSourceType.VIDEO_SOURCE_NATIVE, resolution: new VideoSourceResolution({ width: 64, height: 64 }) }) });
  if (source.case !== 'newVideoSource') throw new Error('no video source');
  const track = send({ case: 'createVideoTrack', value: new CreateVideoTrackRequest({ name: 'v', sourceHandle: source.value.source!.handle!.id! }) });
  if (track.case !== 'createVideoTrack') throw new Error('no video track');
  return track.value.track!.handle!.id!;
}

const [scenario, ...args] = process.argv.slice(2);
const n = args.map(Number);
switch (scenario) {
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
