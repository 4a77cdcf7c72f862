// The pointer-bearing audio and data requests through the broker against the real liblivekit_ffi,
// with no LiveKit server: each must behave as it does in-process, with the memory behind its
// pointers carried as Buffers. Facts from the library's source (livekit-ffi/src/server/requests.rs,
// server/resampler.rs, libwebrtc/src/native/apm.rs) that the cases rely on:
// - RemixAndResample returns a 10 ms frame at the destination rate (sample_rate / 100 samples per
//   channel) in an OwnedAudioFrameBuffer; its memory lives until that handle is dropped, which the
//   broker does right after copying it.
// - PushSoxResamplerRequest.size and the responses' size are in BYTES (the library reads size / 2
//   i16 samples); output_ptr is the resampler's own output Vec, reused by every push and by the
//   flush, so its bytes are only valid until the next call on that resampler. An empty output is
//   output_ptr 0, size 0.
// - ApmProcess(Reverse)StreamRequest.size is in BYTES, processed in place in 10 ms chunks; the
//   library refuses (in the response) a data_ptr that is not i16-aligned, and aborts the process on a
//   size that is not a positive multiple of 10 ms, so every frame here is exactly 10 ms.
// - PublishDataRequest looks its local_participant_handle up as a participant before it touches
//   data_ptr; a handle of another kind makes livekit_ffi_request fail (no response) and the library
//   log "handle is not a ...FfiParticipant" at error level.
// The event side of BufferInfo (received data packets) needs a LiveKit server and is not covered here.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import {
  ApmProcessReverseStreamRequest,
  ApmProcessStreamRequest,
  AudioFrameBufferInfo,
  AudioSourceType,
  FlushSoxResamplerRequest,
  NewApmRequest,
  NewAudioResamplerRequest,
  NewAudioSourceRequest,
  NewSoxResamplerRequest,
  PushSoxResamplerRequest,
  RemixAndResampleRequest,
  SoxQualityRecipe,
  SoxResamplerDataType,
} from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import type { FfiResponse } from '@livekit/rtc-ffi-bindings/proto/ffi_pb.js';
import { PublishDataRequest } from '@livekit/rtc-ffi-bindings/proto/room_pb.js';
import { BrokerClient } from '../client/broker_client.js';
import { audioBuffer, audioSamples, dataBuffer, type BufferMap } from '../client/media.js';
import { Error_Code, type Notice } from '../proto/gen/ffi_broker_pb.js';
import { startBroker, waitFor, type BrokerProcess } from './helpers/processes.js';
import { expectRefusal, ffi } from './helpers/assertions.js';

const IN_RATE = 48000;
const FRAME = IN_RATE / 100; // 10 ms at 48 kHz
const TONE_HZ = 440;
const AMPLITUDE = 10000;


type ResponseCase = NonNullable<FfiResponse['message']['case']>;
type ResponseValue<K extends ResponseCase> = Extract<FfiResponse['message'], { case: K }>['value'];

/** The selected response, checked to be of `kind`. */
function answer<K extends ResponseCase>(response: FfiResponse, kind: K): ResponseValue<K> {
  assert.equal(response.message.case, kind, `a ${kind} response`);
  const value: unknown = response.message.value;
  return value as ResponseValue<K>;
}

/** `length` samples of offset + amplitude·sin(2π·f·t), t counted from sample `start` at `rate`. */
function tone(start: number, length: number, rate: number, amplitude = AMPLITUDE, offset = 0): number[] {
  return Array.from({ length }, (_, i) => offset + Math.round(amplitude * Math.sin((2 * Math.PI * TONE_HZ * (start + i)) / rate)));
}

/** A copy as i16 (the received bytes may sit at an odd offset of gRPC's read buffer). */
function int16(bytes: Uint8Array): Int16Array {
  assert.equal(bytes.byteLength % 2, 0, 'a whole number of i16 samples');
  const copy = new Uint8Array(bytes);
  return new Int16Array(copy.buffer, 0, copy.byteLength / 2);
}

interface SineFit {
  amplitude: number;
  /** Seconds the signal lags a sine that starts at phase 0 at sample 0 (within ± half a period). */
  delay: number;
  dc: number;
  /** RMS of what the fitted sine + dc does not explain. */
  residual: number;
}

/**
 * Least-squares fit of a·sin + b·cos + c at TONE_HZ to `x`, whose first sample is sample `start`
 * of a stream at `rate`. Independent of the resampler's delay (it becomes the phase), and a wrong
 * rate or a garbled signal shows as a large residual.
 */
function fitSine(x: ArrayLike<number>, start: number, rate: number): SineFit {
  const S = [
    [0, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
  ];
  const r = [0, 0, 0];
  const basis = (n: number) => {
    const w = (2 * Math.PI * TONE_HZ * (start + n)) / rate;
    return [Math.sin(w), Math.cos(w), 1];
  };
  for (let n = 0; n < x.length; n++) {
    const v = basis(n);
    for (let i = 0; i < 3; i++) {
      r[i]! += v[i]! * x[n]!;
      for (let j = 0; j < 3; j++) S[i]![j]! += v[i]! * v[j]!;
    }
  }
  // Gauss-Jordan on the 3×3 normal equations.
  const M = S.map((row, i) => [...row, r[i]!]);
  for (let i = 0; i < 3; i++) {
    let p = i;
    for (let k = i + 1; k < 3; k++) if (Math.abs(M[k]![i]!) > Math.abs(M[p]![i]!)) p = k;
    [M[i], M[p]] = [M[p]!, M[i]!];
    for (let k = 0; k < 3; k++) {
      if (k === i) continue;
      const q = M[k]![i]! / M[i]![i]!;
      for (let j = i; j < 4; j++) M[k]![j]! -= q * M[i]![j]!;
    }
  }
  const [a, b, c] = M.map((row, i) => row[3]! / row[i]!) as [number, number, number];
  let sq = 0;
  for (let n = 0; n < x.length; n++) {
    const v = basis(n);
    const e = x[n]! - (a * v[0]! + b * v[1]! + c);
    sq += e * e;
  }
  // a·sin(w) + b·cos(w) = A·sin(w + φ), φ = atan2(b, a); a lag of d seconds is φ = -2π·f·d.
  const period = 1 / TONE_HZ;
  let delay = (-Math.atan2(b, a) / (2 * Math.PI * TONE_HZ)) % period;
  if (delay > period / 2) delay -= period;
  if (delay <= -period / 2) delay += period;
  return { amplitude: Math.hypot(a, b), delay, dc: c, residual: Math.sqrt(sq / x.length) };
}

const describeFit = (f: SineFit) =>
  `amplitude ${f.amplitude.toFixed(1)}, dc ${f.dc.toFixed(1)}, residual rms ${f.residual.toFixed(2)}, delay ${(f.delay * 1000).toFixed(3)} ms`;


/** The only Buffer of a response, checked to be keyed by `ptr` and `byteLength` long. */
function onlyBuffer(buffers: BufferMap, ptr: bigint, byteLength: number, what: string): Uint8Array {
  assert.deepEqual([...buffers.keys()], [ptr], `${what}: one Buffer, keyed by 0x${ptr.toString(16)}`);
  const bytes = buffers.get(ptr)!;
  assert.equal(bytes.byteLength, byteLength, `${what}: bytes`);
  return bytes;
}

// Records of the library refusing the wrong-kind PublishDataRequest on purpose (case 4).
const PUBLISH_REFUSAL = /failed to handle request .*PublishData\(PublishDataRequest \{ local_participant_handle: (\d+), data_ptr: (\d+), data_len: (\d+).*handle is not a .*FfiParticipant/;

describe('audio and data requests with pointers, through the broker as in-process', () => {
  let broker: BrokerProcess;
  let client: BrokerClient;
  const notices: Notice[] = [];

  const owned = async () => (await broker.info()).sessions.find((s) => s.sessionId === client.sessionId)?.ownedHandles;

  before(async () => {
    broker = await startBroker();
    client = await BrokerClient.connect(broker.address, { clientName: 'audio-data' });
    client.on('notice', (n) => notices.push(n));
  });

  after(async () => {
    await client?.close();
    if (broker !== undefined) assert.equal(await broker.stop(), 0, 'broker exits 0 on SIGTERM');
  });

  test('1. RemixAndResample: stereo 48 kHz sine to mono 16 and 24 kHz; the frame handle is the broker\'s, not the session\'s', async (t) => {
    for (const outRate of [16000, 24000]) {
      const created = await client.request(ffi({ case: 'newAudioResampler', value: new NewAudioResamplerRequest() }));
      const resampler = answer(created.response, 'newAudioResampler').resampler!.handle!.id!;
      try {
        assert.equal(await owned(), 1n, 'the session owns the resampler');
        const outFrame = outRate / 100;
        const out: number[] = [];
        for (let k = 0; k < 10; k++) {
          // L = R = the tone: the mono downmix is the tone itself.
          const mono = tone(k * FRAME, FRAME, IN_RATE);
          const stereo = new Int16Array(FRAME * 2);
          mono.forEach((v, i) => stereo.fill(v, 2 * i, 2 * i + 2));
          const [ptr, bytes] = audioBuffer(stereo);
          const buffer = new AudioFrameBufferInfo({ dataPtr: ptr, numChannels: 2, sampleRate: IN_RATE, samplesPerChannel: FRAME });
          const { response, buffers } = await client.request(
            ffi({ case: 'remixAndResample', value: new RemixAndResampleRequest({ resamplerHandle: resampler, buffer, numChannels: 1, sampleRate: outRate }) }),
            [[ptr, bytes]],
          );
          const frame = answer(response, 'remixAndResample').buffer!;
          const info = frame.info!;
          assert.deepEqual(
            { numChannels: info.numChannels, sampleRate: info.sampleRate, samplesPerChannel: info.samplesPerChannel },
            { numChannels: 1, sampleRate: outRate, samplesPerChannel: outFrame },
            `${outRate} Hz frame ${k}: 10 ms of mono`,
          );
          assert.notEqual(info.dataPtr, ptr, 'data_ptr is the library\'s memory, not the worker\'s');
          onlyBuffer(buffers, info.dataPtr!, outFrame * 2, `${outRate} Hz frame ${k}`);
          out.push(...audioSamples(buffers, info));
          if (k === 0) {
            // The broker dropped the frame's handle once it had copied the bytes.
            const frameHandle = frame.handle!.id!;
            assert.equal(await owned(), 1n, 'the session owns only the resampler, not the frame buffer');
            await expectRefusal(client.dropHandles([frameHandle]), Error_Code.PERMISSION_DENIED, new RegExp(`handles ${frameHandle} are not owned by this session`));
          }
        }
        assert.equal(out.length, 10 * outFrame);
        // The resampler starts from silence, so its first frame holds the filter's ramp-up: fit
        // the other nine. A sine through a good resampler stays a sine of the same frequency and
        // amplitude, delayed a little: amplitude within 2 %, residual under 1 % of the amplitude
        // (i16 rounding and filter ripple are far below), no DC, delay under 1 ms (WebRTC's sinc
        // resampler delays by a few output samples; measured 0.375 ms at 16 kHz, 0.333 at 24).
        const fit = fitSine(out.slice(outFrame), outFrame, outRate);
        t.diagnostic(`48 kHz stereo → ${outRate / 1000} kHz mono: ${describeFit(fit)}`);
        assert.ok(Math.abs(fit.amplitude - AMPLITUDE) < AMPLITUDE * 0.02, `amplitude: ${describeFit(fit)}`);
        assert.ok(fit.residual < AMPLITUDE * 0.01, `residual: ${describeFit(fit)}`);
        assert.ok(Math.abs(fit.dc) < 50, `dc: ${describeFit(fit)}`);
        assert.ok(fit.delay >= 0 && fit.delay < 0.001, `delay: ${describeFit(fit)}`);
      } finally {
        await client.dropHandles([resampler]);
      }
      assert.equal(await owned(), 0n);
    }
  });

  test('2. sox resampler: 48 → 16 kHz mono in 10 ms pushes; output bytes copied before the next call reuses them', async (t) => {
    const created = await client.request(
      ffi({
        case: 'newSoxResampler',
        value: new NewSoxResamplerRequest({
          inputRate: IN_RATE,
          outputRate: 16000,
          numChannels: 1,
          inputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I,
          outputDataType: SoxResamplerDataType.SOXR_DATATYPE_INT16I,
          qualityRecipe: SoxQualityRecipe.SOXR_QUALITY_MEDIUM,
        }),
      }),
    );
    const made = answer(created.response, 'newSoxResampler').message;
    assert.equal(made.case, 'resampler', `NewSoxResampler: ${made.case === 'error' ? made.value : 'no resampler'}`);
    const resampler = made.value!.handle!.id!;
    try {
      assert.equal(await owned(), 1n, 'the session owns the sox resampler');
      const PUSHES = 20;
      const out: number[] = [];
      const outputPointers: bigint[] = [];
      const take = (what: string, outputPtr: bigint | undefined, size: number | undefined, error: string | undefined, buffers: BufferMap) => {
        assert.equal(error, undefined, `${what}: no error`);
        if ((size ?? 0) === 0) {
          // Nothing produced (soxr works in blocks): nothing to copy.
          assert.equal(buffers.size, 0, `${what}: no Buffer for an empty output`);
          return;
        }
        assert.notEqual(outputPtr, 0n);
        outputPointers.push(outputPtr!);
        out.push(...int16(onlyBuffer(buffers, outputPtr!, size!, what)));
      };
      for (let k = 0; k < PUSHES; k++) {
        const [ptr, bytes] = audioBuffer(Int16Array.from(tone(k * FRAME, FRAME, IN_RATE)));
        // size in bytes: 480 samples are 960 bytes.
        const { response, buffers } = await client.request(
          ffi({ case: 'pushSoxResampler', value: new PushSoxResamplerRequest({ resamplerHandle: resampler, dataPtr: ptr, size: bytes.byteLength }) }),
          [[ptr, bytes]],
        );
        const pushed = answer(response, 'pushSoxResampler');
        take(`push ${k}`, pushed.outputPtr, pushed.size, pushed.error, buffers);
      }
      const beforeFlush = out.length;
      assert.ok(beforeFlush > 0, 'some output while pushing, not all of it at the flush');
      const flushed = await client.request(ffi({ case: 'flushSoxResampler', value: new FlushSoxResamplerRequest({ resamplerHandle: resampler }) }));
      const flush = answer(flushed.response, 'flushSoxResampler');
      take('flush', flush.outputPtr, flush.size, flush.error, flushed.buffers);
      t.diagnostic(
        `${outputPointers.length} outputs (${beforeFlush} samples pushed out, ${out.length - beforeFlush} flushed) at ${new Set(outputPointers).size} distinct output_ptr value(s)`,
      );
      // The resampler's output Vec only grows, so the pinned library hands out the same memory
      // again: what the checks below see intact was copied by the broker before it answered.
      assert.ok(new Set(outputPointers).size < outputPointers.length, `the library reused its output memory (${outputPointers.join(', ')})`);

      // 20 × 480 input samples at 48 kHz are 3200 at 16 kHz; soxr's flush hands out the tail.
      const expected = (PUSHES * FRAME * 16000) / IN_RATE;
      assert.ok(Math.abs(out.length - expected) <= 2, `${out.length} output samples, ${expected} expected`);
      // soxr compensates its own filter delay, so the output is the input tone sampled at 16 kHz,
      // sample for sample (every third input sample). Away from the abrupt start and end (10 ms
      // each), a medium-quality soxr matches it within i16 rounding (measured max 1): allow 0.5 %
      // of the amplitude. The chunks follow each other seamlessly only if every response carried
      // the bytes as they were when it was answered, though the library reuses one output buffer.
      const reference = tone(0, out.length, 16000);
      let worst = 0;
      for (let n = 160; n < out.length - 160; n++) worst = Math.max(worst, Math.abs(out[n]! - reference[n]!));
      const fit = fitSine(out.slice(160, out.length - 160), 160, 16000);
      t.diagnostic(`sox 48 → 16 kHz: largest difference from the 16 kHz tone ${worst}; ${describeFit(fit)}`);
      assert.ok(worst <= AMPLITUDE * 0.005, `largest difference from the 16 kHz tone: ${worst}`);
      assert.ok(Math.abs(fit.amplitude - AMPLITUDE) < AMPLITUDE * 0.01 && fit.residual < AMPLITUDE * 0.005, describeFit(fit));
    } finally {
      await client.dropHandles([resampler]);
    }
    assert.equal(await owned(), 0n);
  });

  test('3. APM: the high-pass filter removes a DC offset in place; results come back under the worker\'s pointer', async (t) => {
    const created = await client.request(
      ffi({ case: 'newApm', value: new NewApmRequest({ echoCancellerEnabled: false, gainControllerEnabled: false, highPassFilterEnabled: true, noiseSuppressionEnabled: false }) }),
    );
    const apm = answer(created.response, 'newApm').apm!.handle!.id!;
    try {
      assert.equal(await owned(), 1n, 'the session owns the APM');
      // The tone riding on a DC offset of 8000, 30 frames of 10 ms.
      const FRAMES = 30;
      const DC = 8000;
      const TONE = 3000;
      const out: number[] = [];
      for (let k = 0; k < FRAMES; k++) {
        const input = Int16Array.from(tone(k * FRAME, FRAME, IN_RATE, TONE, DC));
        const [ptr, bytes] = audioBuffer(input);
        const { response, buffers } = await client.request(
          ffi({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: ptr, size: bytes.byteLength, sampleRate: IN_RATE, numChannels: 1 }) }),
          [[ptr, bytes]],
        );
        assert.equal(answer(response, 'apmProcessStream').error, undefined, `frame ${k}: no error`);
        // In-out: the processed samples, keyed by the worker's own pointer, as long as the input.
        const processed = int16(onlyBuffer(buffers, ptr, bytes.byteLength, `frame ${k}`));
        assert.deepEqual([...input], tone(k * FRAME, FRAME, IN_RATE, TONE, DC), 'the worker\'s own memory is untouched');
        if (k === 0) assert.notDeepEqual([...processed], [...input], 'the first frame came back processed');
        out.push(...processed);
      }
      // WebRTC's high-pass filter (a low cut-off IIR) has mostly settled after 100 ms: fit the last
      // 200 ms. The DC offset is gone (under 50 of 8000; measured 2), the 440 Hz tone passes (within
      // 10 %: measured 2908 of 3000), and the residual, the filter's decaying ringing, is under 100
      // (measured 23). The APM is deterministic: the same input through a fresh one, the same output.
      const settled = out.slice(10 * FRAME);
      const fit = fitSine(settled, 10 * FRAME, IN_RATE);
      t.diagnostic(`APM high-pass, frames 10-29: ${describeFit(fit)}; first frame mean ${(out.slice(0, FRAME).reduce((a, b) => a + b, 0) / FRAME).toFixed(1)}`);
      assert.ok(Math.abs(fit.dc) < 50, `the DC offset of ${DC} is removed: ${describeFit(fit)}`);
      assert.ok(Math.abs(fit.amplitude - TONE) < TONE * 0.1, `the tone passes: ${describeFit(fit)}`);
      assert.ok(fit.residual < 100, describeFit(fit));

      // The reverse (far-end) stream: also in-out, also keyed by the worker's pointer. The APM only
      // analyses it (no render processing is configurable through NewApm), so it comes back as sent.
      for (let k = 0; k < 3; k++) {
        const input = Int16Array.from(tone(k * FRAME, FRAME, IN_RATE, TONE, DC));
        const [ptr, bytes] = audioBuffer(input);
        const { response, buffers } = await client.request(
          ffi({ case: 'apmProcessReverseStream', value: new ApmProcessReverseStreamRequest({ apmHandle: apm, dataPtr: ptr, size: bytes.byteLength, sampleRate: IN_RATE, numChannels: 1 }) }),
          [[ptr, bytes]],
        );
        assert.equal(answer(response, 'apmProcessReverseStream').error, undefined, `reverse frame ${k}: no error`);
        assert.deepEqual([...int16(onlyBuffer(buffers, ptr, bytes.byteLength, `reverse frame ${k}`))], [...input], `reverse frame ${k}: unchanged`);
      }

      // size says 960 bytes, the Buffer holds 480: refused before the library reads past it.
      const [shortPtr, shortBytes] = audioBuffer(new Int16Array(FRAME / 2));
      await expectRefusal(
        client.request(
          ffi({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: shortPtr, size: FRAME * 2, sampleRate: IN_RATE, numChannels: 1 }) }),
          [[shortPtr, shortBytes]],
        ),
        Error_Code.INVALID_REQUEST,
        /ApmProcessStreamRequest: the Buffer for data_ptr = .* has 480 bytes, the message implies 960/,
      );
      await expectRefusal(
        client.request(
          ffi({ case: 'apmProcessReverseStream', value: new ApmProcessReverseStreamRequest({ apmHandle: apm, dataPtr: shortPtr, size: FRAME * 2, sampleRate: IN_RATE, numChannels: 1 }) }),
          [[shortPtr, shortBytes]],
        ),
        Error_Code.INVALID_REQUEST,
        /ApmProcessReverseStreamRequest: the Buffer for data_ptr = .* has 480 bytes, the message implies 960/,
      );
      // The APM still works after the refusals.
      const [ptr, bytes] = audioBuffer(new Int16Array(FRAME).fill(DC));
      const again = await client.request(
        ffi({ case: 'apmProcessStream', value: new ApmProcessStreamRequest({ apmHandle: apm, dataPtr: ptr, size: bytes.byteLength, sampleRate: IN_RATE, numChannels: 1 }) }),
        [[ptr, bytes]],
      );
      assert.equal(answer(again.response, 'apmProcessStream').error, undefined);
      onlyBuffer(again.buffers, ptr, bytes.byteLength, 'after the refusals');
    } finally {
      await client.dropHandles([apm]);
    }
    assert.equal(await owned(), 0n);
  });

  test('4. PublishDataRequest without a room: the library gets the broker\'s copy and refuses the wrong-kind handle; a short Buffer never reaches it', async () => {
    const created = await client.request(
      ffi({ case: 'newAudioSource', value: new NewAudioSourceRequest({ type: AudioSourceType.AUDIO_SOURCE_NATIVE, sampleRate: IN_RATE, numChannels: 1, queueSizeMs: 1000 }) }),
    );
    const source = answer(created.response, 'newAudioSource').source!.handle!.id!;
    try {
      const [ptr, bytes] = dataBuffer(new TextEncoder().encode('hello broker'));
      // The session owns the handle, so the broker passes it; the library wants a participant.
      await expectRefusal(
        client.request(ffi({ case: 'publishData', value: new PublishDataRequest({ localParticipantHandle: source, dataPtr: ptr, dataLen: BigInt(bytes.byteLength), reliable: true }) }), [[ptr, bytes]]),
        Error_Code.FFI_ERROR,
        /liblivekit_ffi refused PublishDataRequest/,
      );
      // The library's own record of the request it got: our handle and length, and a data_ptr of
      // the broker's copy (not the worker's pointer value, which means nothing in the broker).
      await waitFor(() => broker.logs.some((r) => r.component === 'livekit_ffi' && PUBLISH_REFUSAL.test(String(r.msg))), 2000, "the library's refusal in the broker log");
      const records = broker.logs.filter((r) => r.component === 'livekit_ffi' && PUBLISH_REFUSAL.test(String(r.msg)));
      assert.equal(records.length, 1);
      const [, handle, dataPtr, dataLen] = PUBLISH_REFUSAL.exec(String(records[0]!.msg))!;
      assert.equal(BigInt(handle!), source);
      assert.equal(Number(dataLen), bytes.byteLength);
      assert.notEqual(BigInt(dataPtr!), ptr, 'the library got the broker\'s copy, not the worker\'s pointer');
      assert.notEqual(BigInt(dataPtr!), 0n);

      // data_len one past the Buffer: refused by the broker, the library never sees it.
      await expectRefusal(
        client.request(ffi({ case: 'publishData', value: new PublishDataRequest({ localParticipantHandle: source, dataPtr: ptr, dataLen: BigInt(bytes.byteLength + 1), reliable: true }) }), [[ptr, bytes]]),
        Error_Code.INVALID_REQUEST,
        new RegExp(`PublishDataRequest: the Buffer for data_ptr = ${ptr} \\(0x${ptr.toString(16)}\\) has ${bytes.byteLength} bytes, the message implies ${bytes.byteLength + 1}`),
      );
      await new Promise((resolve) => setTimeout(resolve, 200)); // library log records travel by the event queue and a pipe
      assert.equal(broker.logs.filter((r) => r.component === 'livekit_ffi' && PUBLISH_REFUSAL.test(String(r.msg))).length, 1, 'the short request never reached the library');

      // The session and the broker are fine: a new handle is served, the source is still ours.
      const next = await client.request(ffi({ case: 'newAudioResampler', value: new NewAudioResamplerRequest() }));
      await client.dropHandles([answer(next.response, 'newAudioResampler').resampler!.handle!.id!]);
      assert.equal(await owned(), 1n, 'the session owns the source');
    } finally {
      await client.dropHandles([source]);
    }
    assert.equal(await owned(), 0n);
  });

  test('afterwards: nothing owned, the broker healthy, no error records but the library\'s refusal of case 4, no panic', async () => {
    assert.ok(client.isOpen, `the session is open (${client.closeReason?.message ?? ''})`);
    assert.equal(broker.proc.exitCode, null, 'broker still running');
    assert.equal(broker.proc.signalCode, null, 'broker not killed');
    const info = await broker.info();
    assert.equal(info.sessions.find((s) => s.sessionId === client.sessionId)?.ownedHandles, 0n, 'the session owns nothing');
    assert.equal(info.ownedHandles, 0n, 'the broker holds no handles');
    assert.deepEqual(
      notices.filter((n) => n.notice.case === 'ffiPanic'),
      [],
      'no FfiPanic notice',
    );
    const severe = broker.logs.filter((r) => typeof r.level === 'number' && r.level >= 50);
    const unexpected = severe.filter((r) => !(r.component === 'livekit_ffi' && PUBLISH_REFUSAL.test(String(r.msg))));
    assert.deepEqual(unexpected, [], 'error or fatal records besides the library refusing the wrong-kind PublishDataRequest');
    assert.equal(severe.length, 1, 'exactly one: the library refusing the wrong-kind PublishDataRequest');
    assert.deepEqual(broker.logs.filter((r) => /panic/i.test(String(r.msg))), [], 'no panic');
    // Every pointer the library handed out was one the broker copies.
    assert.deepEqual(broker.logs.filter((r) => r.pointerField !== undefined), [], 'no pointer field forwarded without its memory');
  });
});
