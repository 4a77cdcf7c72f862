// Shared by the reliability suites: the mode (quick in CI, long from `npm run test:reliability:long`),
// a broker started with /metrics, what the kernel and the broker say about its resources, and the
// figures each suite reports (printed as one JSON line, and kept under build/reliability/ for
// RELIABILITY.md).
import fs from 'node:fs';
import path from 'node:path';
import { startBroker, type BrokerProcess } from '../helpers/processes.js';
import { procRssMiB } from '../helpers/proc_stats.js';

export const MODE: 'quick' | 'long' = process.env.RELIABILITY_MODE === 'long' ? 'long' : 'quick';
export const byMode = <T>(quick: T, long: T): T => (MODE === 'long' ? long : quick);

export interface ProbedBroker extends BrokerProcess {
  metricsUrl: string;
}

/** A broker with --metrics-listen on a free loopback port. */
export async function startProbedBroker(extraArgs: string[] = [], env: NodeJS.ProcessEnv = {}, listen?: string): Promise<ProbedBroker> {
  const broker = await startBroker(['--metrics-listen', '127.0.0.1:0', ...extraArgs], env, listen);
  const record = broker.logs.find((l) => l.msg === 'serving metrics');
  if (record === undefined) throw new Error('the broker did not log its metrics address');
  return Object.assign(broker, { metricsUrl: String(record.metrics) });
}

/** Every sample of /metrics, summed over labels, by metric name. */
export async function scrape(url: string): Promise<Map<string, number>> {
  const text = await (await fetch(url)).text();
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m === null) continue;
    out.set(m[1]!, (out.get(m[1]!) ?? 0) + Number(m[3]));
  }
  return out;
}

/** Buckets (upper bound in seconds → cumulative count) of one histogram, summed over labels. */
export async function histogram(url: string, name: string): Promise<Map<number, number>> {
  const text = await (await fetch(url)).text();
  const out = new Map<number, number>();
  for (const line of text.split('\n')) {
    const m = new RegExp(`^${name}_bucket\\{(?:[^}]*,)?le="([^"]+)"[^}]*\\} (\\S+)$`).exec(line);
    if (m === null) continue;
    const le = m[1] === '+Inf' ? Number.POSITIVE_INFINITY : Number(m[1]);
    out.set(le, (out.get(le) ?? 0) + Number(m[2]));
  }
  return out;
}

/** The bucket bound under which `q` of the observations between two scrapes fall (NaN: none). */
export function quantileBetween(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const bounds = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Number.POSITIVE_INFINITY) ?? 0) - (before.get(Number.POSITIVE_INFINITY) ?? 0);
  if (total <= 0) return Number.NaN;
  for (const le of bounds) if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= q * total) return le;
  return Number.POSITIVE_INFINITY;
}

/** The process's RSS in MiB, to 0.1 MiB (0 if unreadable). */
export function rssMiB(pid: number): number {
  return Math.round((procRssMiB(pid) ?? 0) * 10) / 10;
}

export function openFds(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).length;
}

export interface Snapshot {
  rssMiB: number;
  fds: number;
  ownedHandles: number;
  sessions: number;
  nativeQueueDepth: number;
  unvalidatedPointers: number;
}

/** The broker's resources now: RSS and fds from /proc, handles and sessions from Info, the rest from /metrics. */
export async function snapshot(broker: ProbedBroker): Promise<Snapshot> {
  const pid = broker.proc.pid!;
  const [info, metrics] = await Promise.all([broker.info(), scrape(broker.metricsUrl)]);
  return {
    rssMiB: rssMiB(pid),
    fds: openFds(pid),
    ownedHandles: Number(info.ownedHandles),
    sessions: info.sessions.length,
    nativeQueueDepth: metrics.get('lkb_native_queue_depth') ?? Number.NaN,
    unvalidatedPointers: metrics.get('lkb_unvalidated_pointers_total') ?? Number.NaN,
  };
}

const REPORT_DIR = path.resolve(__dirname, '..', '..', '..', 'build', 'reliability');

/** Prints the suite's figures as one JSON line and keeps them in build/reliability/<suite>.<mode>.json. */
export function report(suite: string, figures: Record<string, unknown>): void {
  const record = { suite, mode: MODE, at: new Date().toISOString(), ...figures };
  const text = JSON.stringify(record, (_k, v) => (typeof v === 'bigint' ? v.toString() : v));
  console.log(`RELIABILITY ${text}`);
  fs.mkdirSync(REPORT_DIR, { recursive: true });
  fs.writeFileSync(path.join(REPORT_DIR, `${suite}.${MODE}.json`), JSON.stringify(JSON.parse(text), null, 2) + '\n');
}
