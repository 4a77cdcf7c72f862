// One Node worker process of the `workers` benchmark (bench/workers.ts), forked by
// bench/worker_processes.ts with its spec as JSON in argv[2]. The workload is audio_workload.ts's,
// on one of ffi_path.ts's two paths: `in-process` loads @livekit/rtc-ffi-bindings' Node-API module
// into this process (its own liblivekit_ffi), `broker` is one Session to the broker at `address`.
// Protocol over IPC: {event: 'ready'} once set up, then it waits for the message 'go', runs, and
// sends {result} (the run's figures with every frame's latency) or {error}, and exits on the message
// 'exit' (or when the channel closes): the parent samples every process at the end of the window,
// so none may exit before.
import { runAudio } from './audio_workload.js';
import { brokerPath, inProcessPath, type FfiPath } from './ffi_path.js';
import type { WorkerSpec } from './worker_processes.js';

export type NodeWorkerSpec = Omit<WorkerSpec, 'sdk'>;

const told = (word: string) =>
  new Promise<void>((resolve) => {
    process.on('message', (m) => m === word && resolve());
    process.on('disconnect', resolve);
  });
const go = told('go');
const exit = told('exit');

async function main(): Promise<void> {
  const spec = JSON.parse(process.argv[2]!) as NodeWorkerSpec;
  let path: FfiPath | undefined;
  try {
    path = spec.path === 'broker' ? await brokerPath(spec.address!, { clientName: `bench-worker-${spec.index}` }) : inProcessPath();
    const run = await runAudio([path], {
      streamsPerPath: spec.streams,
      captureOnlyPerPath: spec.captureOnly,
      queueSizeMs: spec.queueSizeMs,
      warmupS: spec.warmupS,
      measureS: spec.measureS,
      beforeStart: () => {
        process.send!({ event: 'ready' });
        return go;
      },
      keepLatencies: true,
    });
    process.send!({ result: { path: spec.path, ...run } });
  } catch (err) {
    process.send!({ error: String((err as Error)?.stack ?? err) });
  } finally {
    await path?.close();
  }
  await exit;
  // Native threads may still hold the loop open; the result is delivered.
  if (process.connected) process.disconnect();
  process.exit(0);
}

void main();
