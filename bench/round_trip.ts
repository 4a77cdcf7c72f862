// Request round trip: a small request (NewAudioResampler) and the release of what it made, one at a
// time, through the broker over a Unix socket and over TCP loopback, beside in-process
// @livekit/rtc-ffi-bindings. Each case runs in a child process of its own.
import { NewAudioResamplerRequest } from '@livekit/rtc-ffi-bindings/proto/audio_frame_pb.js';
import type { BrokerProcess } from '../test/helpers/processes.js';
import { startBenchBroker } from './bench_broker.js';
import { runInChild } from './child.js';
import { brokerPath, inProcessPath, type PathKind } from './ffi_path.js';
import { log, nowMs, quantiles, summarize, type Summary } from './stats.js';

export interface RoundTripSpec {
  path: PathKind;
  transport: 'unix' | 'tcp' | 'in-process';
  address?: string;
  warmup: number;
  iterations: number;
}

export interface RoundTripResult {
  transport: RoundTripSpec['transport'];
  iterations: number;
  /** NewAudioResampler: send → FfiResponse decoded. */
  request_us: Summary;
  request_quantiles_us: [number, number | null][];
  /** Release of the resampler: DropHandles answered (broker) or FfiHandle.dispose() returned (in-process). */
  drop_us: Summary;
}

/** One case, in a child process of run.js. */
export async function runRoundTrip(spec: RoundTripSpec): Promise<RoundTripResult> {
  const path = spec.path === 'broker' ? await brokerPath(spec.address!, { clientName: 'bench-round-trip' }) : inProcessPath();
  try {
    const request: number[] = [];
    const drop: number[] = [];
    for (let i = 0; i < spec.warmup + spec.iterations; i++) {
      const t0 = nowMs();
      const res = await path.call({ case: 'newAudioResampler', value: new NewAudioResamplerRequest() });
      const t1 = nowMs();
      if (res.case !== 'newAudioResampler') throw new Error(`NewAudioResampler answered ${res.case}`);
      await path.drop(res.value.resampler!.handle!.id!);
      const t2 = nowMs();
      if (i < spec.warmup) continue;
      request.push((t1 - t0) * 1000);
      drop.push((t2 - t1) * 1000);
    }
    return {
      transport: spec.transport,
      iterations: spec.iterations,
      request_us: summarize(request, 1),
      request_quantiles_us: quantiles(request, 1),
      drop_us: summarize(drop, 1),
    };
  } finally {
    await path.close();
  }
}

export async function roundTrip(quick: boolean): Promise<Record<string, unknown>> {
  const iterations = quick ? 500 : 5000;
  const warmup = quick ? 100 : 500;
  const results: (RoundTripResult | { transport: string; error: string })[] = [];
  const run = async (spec: RoundTripSpec) => {
    log(`round_trip: ${spec.transport}, ${spec.iterations} iterations`);
    try {
      const r = await runInChild<RoundTripResult>('round_trip', spec, 300_000);
      log(`  request p50 ${r.request_us.p50} us, p99 ${r.request_us.p99} us; drop p50 ${r.drop_us.p50} us`);
      results.push(r);
    } catch (err) {
      log(`  failed: ${String(err)}`);
      results.push({ transport: spec.transport, error: String((err as Error)?.message ?? err) });
    }
  };
  await run({ path: 'in-process', transport: 'in-process', warmup, iterations });
  for (const transport of ['unix', 'tcp'] as const) {
    let broker: BrokerProcess | undefined;
    try {
      broker = await startBenchBroker(transport === 'tcp' ? '127.0.0.1:0' : undefined);
      await run({ path: 'broker', transport, address: broker.address, warmup, iterations });
    } finally {
      await broker?.stop();
    }
  }
  return {
    round_trip: {
      method:
        'one request at a time: NewAudioResampler (send -> decoded FfiResponse), then the release of the resampler it made; ' +
        `${warmup} warm-up iterations not counted; each transport in a fresh client process, broker at log level info`,
      cases: results,
    },
  };
}
