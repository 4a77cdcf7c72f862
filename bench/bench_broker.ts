// The broker every scenario measures: the real CLI at log level info (debug logging of every
// request would be part of what is measured). `--profile-broker <dir>` on run.js sets
// LIVEKIT_BENCH_PROFILE_DIR, and each broker then writes a V8 CPU profile there when it stops
// (summarize it with `node dist/bench/cpu_profile.js <file>`).
import { startBroker, type BrokerProcess } from '../test/helpers/processes.js';

export const PROFILE_DIR_ENV = 'LIVEKIT_BENCH_PROFILE_DIR';

export function startBenchBroker(listen?: string): Promise<BrokerProcess> {
  const dir = process.env[PROFILE_DIR_ENV];
  return startBroker(['--log-level', 'info'], {}, listen, dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : []);
}
