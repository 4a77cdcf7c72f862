// A worker that stops reading its session for a while: it creates audio streams (whose frames flow
// at 100 per second each, silence while nothing is captured), reads for a second, pauses its gRPC
// stream (the transport stops taking data, as a stuck worker's would), then reads again and reports
// what it saw: EventsDropped notices, the gaps in `seq`, and whether seq only went up.
import { AudioSourceType, AudioStreamType, NewAudioSourceRequest, NewAudioStreamRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import { CreateAudioTrackRequest } from '@livekit/rtc-ffi-bindings/proto/track_pb.js';
import { FfiRequest } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import type { ClientDuplexStream } from '@grpc/grpc-js';
import { BrokerClient } from '../../client/broker_client.js';

const args = new Map<string, string>();
for (let i = 2; i < process.argv.length; i += 2) args.set(process.argv[i]!.replace(/^--/, ''), process.argv[i + 1]!);
const address = args.get('address')!;
const streams = Number(args.get('streams') ?? 4);
const pauseMs = Number(args.get('pause-ms') ?? 3000);

const out = (o: unknown) => process.stdout.write(JSON.stringify(o, (_k, v) => (typeof v === 'bigint' ? v.toString() : v)) + '\n');

async function main(): Promise<void> {
  const client = await BrokerClient.connect(address, { clientName: 'slow-reader' });
  let lastSeq = 0n;
  let gaps = 0n;
  let backwards = 0;
  let frames = 0;
  let dropped = 0n;
  const notices: { count: string; firstSeq: string }[] = [];
  client.on('event', ({ seq }) => {
    if (seq <= lastSeq) backwards++;
    else if (lastSeq !== 0n) gaps += seq - lastSeq - 1n;
    lastSeq = seq;
    frames++;
  });
  client.on('notice', (n) => {
    if (n.notice.case !== 'eventsDropped') return;
    dropped += n.notice.value.count;
    notices.push({ count: String(n.notice.value.count), firstSeq: String(n.notice.value.firstSeq) });
  });
  const call = async (message: FfiRequest['message']) => (await client.request(new FfiRequest({ message }))).response.message;
  for (let i = 0; i < streams; i++) {
    const src = await call({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: 48000, numChannels: 1, queueSizeMs: 1000 }) });
    if (src.case !== 'newAudioSource') throw new Error('no source');
    const trk = await call({ case: 'createAudioTrack', value: new CreateAudioTrackRequest({ name: `t${i}`, sourceHandle: src.value.source!.handle!.id! }) });
    if (trk.case !== 'createAudioTrack') throw new Error('no track');
    await call({ case: 'newAudioStream', value: new NewAudioStreamRequest({ trackHandle: trk.value.track!.handle!.id!, type: AudioStreamType.AUDIO_STREAM_NATIVE, sampleRate: 48000, numChannels: 1 }) });
  }
  await new Promise((r) => setTimeout(r, 1000));
  out({ paused: { sessionId: client.sessionId, frames } });
  // The client's stream object: pausing it stops grpc-js from reading, so HTTP/2 flow control
  // pushes back on the broker, like a worker whose loop is stuck.
  const stream = (client as unknown as { call: ClientDuplexStream<unknown, unknown> }).call;
  stream.pause();
  await new Promise((r) => setTimeout(r, pauseMs));
  stream.resume();
  await new Promise((r) => setTimeout(r, 1500));
  out({ report: { frames, gaps: String(gaps), dropped: String(dropped), notices, backwards } });
  await client.close();
}

main().catch((err) => {
  out({ error: String(err?.stack ?? err) });
  process.exit(1);
});
