#!/usr/bin/env node
// Markdown tables for BENCHMARKS.md from a results file of run.js (`--out results.jsonl`), so the
// figures there are the run's own, not retyped:  node dist/bench/report.js results.jsonl
import fs from 'node:fs';

type Json = Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any

const num = (v: unknown, digits = 1): string => {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const n = Number(v);
  return n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: 0 });
};

function table(header: string[], rows: string[][]): string {
  return [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n');
}

function nativeQueue(r: Json): string {
  const row = (path: string, v: Json, label: string) => [path, label, num(v.events_per_s, 0), num(v.callback_us.p50, 2), num(v.callback_us.p99, 2), num(v.callback_us.max, 0), String(v.order_errors)];
  const q = r.native_queue;
  const k = r.koffi_js_callback;
  const stress = table(
    ['callback path', 'loop, emitters', 'events/s drained', 'callback p50 µs', 'p99 µs', 'max µs', 'order errors'],
    [
      row('C shim queue (broker)', q.idle, 'idle, unpaced'),
      row('C shim queue (broker)', q.blocked, 'blocked, unpaced'),
      row('C shim queue (broker)', q.paced_idle, 'idle, paced'),
      row('C shim queue (broker)', q.paced_blocked, 'blocked, paced'),
      row('koffi JS callback (anchor)', k.idle, 'idle, unpaced'),
      row('koffi JS callback (anchor)', k.paced_idle, 'idle, paced'),
      row('koffi JS callback (anchor)', k.blocked, 'blocked, unpaced'),
    ],
  );
  const real = r.real_library_callbacks as Json;
  const label: Record<string, string> = { shim: 'C shim queue + EventPump (broker)', napi: 'Node-API thread-safe function (@livekit/rtc-ffi-bindings)' };
  const realRows = Object.values(real).map((v: Json) =>
    v.error
      ? [label[v.callbacks] ?? v.callbacks, `failed: ${v.error}`, '', '', '', '']
      : [label[v.callbacks] ?? v.callbacks, num(v.burst.captures, 0), num(v.burst.issue_ms), num(v.burst.drained_events_per_s, 0), num(v.paced.delivery_us.p50), num(v.paced.delivery_us.p99)],
  );
  return `${stress}\n\nReal liblivekit_ffi, CaptureAudioFrame callbacks:\n\n${table(['callback path', 'burst captures', 'JS busy issuing (ms)', 'then drained events/s', 'paced: request → JS p50 µs', 'p99 µs'], realRows)}`;
}

function roundTrip(r: Json): string {
  const label: Record<string, string> = { 'in-process': 'in-process, Node-API (anchor)', unix: 'broker, Unix socket', tcp: 'broker, TCP loopback' };
  return table(
    ['path', 'iterations', 'request p50 µs', 'p99 µs', 'p99.9 µs', 'release p50 µs', 'release p99 µs'],
    r.round_trip.cases.map((c: Json) =>
      c.error
        ? [label[c.transport] ?? c.transport, `failed: ${c.error}`, '', '', '', '', '']
        : [label[c.transport] ?? c.transport, num(c.iterations, 0), num(c.request_us.p50), num(c.request_us.p99), num(c.request_us.p999), num(c.drop_us.p50), num(c.drop_us.p99)],
    ),
  );
}

function audioRow(path: string, c: Json, cpu: unknown, rss: unknown): string[] {
  if (c.error) return [path, String(c.streams ?? ''), `failed: ${c.error}`, '', '', '', '', '', ''];
  const lat = c.latency_ms;
  return [path, num(c.streams, 0), `${num(c.frames_captured, 0)} / ${num(c.frames_received, 0)}`, num(c.frames_lost, 0), num(lat.p50), num(lat.p99), num(lat.p999), num(cpu, 3), num(rss, 0)];
}

const AUDIO_HEADER = ['path', 'streams', 'frames captured / received', 'lost', 'latency p50 ms', 'p99 ms', 'p99.9 ms', 'CPU s per 1,000 frames', 'broker RSS MiB'];

function audio(r: Json): string {
  const label: Record<string, string> = { broker: 'Node, through the broker', 'in-process': 'Node, in-process (anchor)' };
  const rows = r.audio_fanin.cases.map((c: Json) => audioRow(label[c.path] ?? c.path, c, c.cpu_s_per_1000_frames, c.broker_rss_mib?.end));
  const skipped = (r.audio_fanin.skipped as string[]).map((s) => `- not run: ${s}`).join('\n');
  return `${table(AUDIO_HEADER, rows)}${skipped ? `\n\n${skipped}` : ''}`;
}

function python(r: Json): string {
  const rows: string[][] = [];
  for (const c of r.python_audio.cases as Json[]) {
    for (const [key, label] of [
      ['in_process', 'Python SDK, in-process (anchor)'],
      ['broker', 'Python SDK, through the broker'],
    ] as const) {
      const run = c[key];
      if (run === null || run === undefined) continue;
      const frames = run.frames_captured ?? 0;
      const cpu = key === 'broker' ? (run.cpu_s ?? 0) + (run.broker_cpu_s ?? 0) : run.cpu_s;
      rows.push(audioRow(label, { ...run, streams: c.streams }, frames > 0 ? cpu / (frames / 1000) : null, null));
    }
  }
  const skipped = (r.python_audio.skipped as string[]).map((s) => `- not run: ${s}`).join('\n');
  return `${table(AUDIO_HEADER, rows)}${skipped ? `\n\n${skipped}` : ''}`;
}

function video(r: Json): string {
  const label: Record<string, string> = { broker: 'through the broker', 'in-process': 'in-process (anchor)' };
  return table(
    ['path', 'frames', 'streams', 'captured / received', 'lost', 'received frames/s', 'MB/s (in + out)', 'latency p50 ms', 'p99 ms', 'capture request p50 ms'],
    r.video_payload.cases.map((c: Json) =>
      c.error
        ? [label[c.path] ?? c.path, c.resolution, String(c.streams), `failed: ${c.error}`, '', '', '', '', '', '']
        : [label[c.path] ?? c.path, c.resolution, num(c.streams, 0), `${num(c.frames_captured, 0)} / ${num(c.frames_received, 0)}`, num(c.frames_lost, 0), num(c.frames_per_s), num(c.mb_per_s, 0), num(c.latency_ms.p50), num(c.latency_ms.p99), num(c.capture_request_ms.p50)],
    ),
  );
}

function sessions(r: Json): string {
  return table(
    ['sessions', 'frames captured / received', 'lost', 'latency p50 ms', 'p99 ms', 'per-session p99: median', 'worst', 'CPU s per 1,000 frames', 'broker RSS MiB (start → end)'],
    r.sessions.cases.map((c: Json) => {
      if (c.error) return [String(c.sessions), `failed: ${c.error}`, '', '', '', '', '', '', ''];
      const perSession = (c.latency_p99_ms_by_path as (number | null)[]).filter((v): v is number => v !== null).sort((a, b) => a - b);
      return [
        num(c.sessions, 0),
        `${num(c.frames_captured, 0)} / ${num(c.frames_received, 0)}`,
        num(c.frames_lost, 0),
        num(c.latency_ms.p50),
        num(c.latency_ms.p99),
        num(perSession[Math.floor((perSession.length - 1) / 2)]),
        num(perSession.at(-1)),
        num(c.cpu_s_per_1000_frames, 3),
        `${num(c.broker_rss_mib.start, 0)} → ${num(c.broker_rss_mib.end, 0)}`,
      ];
    }),
  );
}

function workers(r: Json): string {
  // Where the cores are saturated, CPU seconds measure the machine, not the path: per capture they compare.
  const perCapture = (c: Json) => (c.captures_in_window > 0 ? c.usage.total.cpu_s / (c.captures_in_window / 1000) : null);
  const label = (c: Json) => `${c.sdk === 'python' ? 'Python SDK' : 'Node'}, ${c.path === 'broker' ? 'through the broker' : 'in-process'}`;
  const split = (u: Json, key: string, digits: number) => (u.broker ? `${num(u.total[key], digits)} (${num(u.workers[key], digits)} + ${num(u.broker[key], digits)})` : num(u.total[key], digits));
  const rows = (r.workers.cases as Json[]).map((c) =>
    c.error
      ? [label(c), num(c.workers, 0), `failed: ${c.error}`, '', '', '', '', '', '', '', '', '']
      : [
          label(c),
          num(c.workers, 0),
          num(c.usage.total.processes, 0),
          split(c.usage, 'cpu_s', 2),
          num(perCapture(c), 2),
          split(c.usage, 'pss_mib', 0),
          split(c.usage, 'threads', 0),
          `${num(c.real_time_pct)} %`,
          `${num(c.frames_captured, 0)} + ${num(c.capture_only_frames_captured, 0)} / ${num(c.frames_received, 0)}`,
          num(c.frames_lost, 0),
          num(c.latency_ms.p50),
          num(c.latency_ms.p99),
        ],
  );
  // Broker against in-process at each SDK and worker count: the issue's target is both ratios ≤ 1 at 25 Python workers.
  const ratios: string[] = [];
  for (const c of r.workers.cases as Json[]) {
    const anchor = (r.workers.cases as Json[]).find((a) => a.sdk === c.sdk && a.workers === c.workers && a.path === 'in-process');
    if (c.path !== 'broker' || c.error || anchor === undefined || anchor.error) continue;
    const ratio = (key: string) => num(c.usage.total[key] / anchor.usage.total[key], 2);
    const perCaptureRatio = perCapture(c) !== null && perCapture(anchor) !== null ? num(perCapture(c)! / perCapture(anchor)!, 2) : '–';
    ratios.push(`- ${num(c.workers, 0)} ${c.sdk === 'python' ? 'Python' : 'Node'} worker${c.workers === 1 ? '' : 's'}: the broker path's CPU ${ratio('cpu_s')}× in-process (per capture ${perCaptureRatio}×), PSS ${ratio('pss_mib')}×, threads ${ratio('threads')}×, at ${num(c.real_time_pct)} % of real time (in-process ${num(anchor.real_time_pct)} %)`);
  }
  const header = ['path', 'workers', 'processes', 'CPU s (workers + broker)', 'CPU s per 1,000 captures', 'PSS MiB (workers + broker)', 'threads (workers + broker)', 'real time kept', 'frames captured (inbound + TTS) / received', 'lost', 'latency p50 ms', 'p99 ms'];
  const notes = [
    '- real time kept: captures sent inside the window ÷ captures due there, over every source (inbound and TTS). A Python worker awaits each `capture_frame()`, so a path that cannot keep up captures fewer; the Node workload issues every capture on time without waiting, so its shortfall shows as frames lost and latency instead.',
    '- CPU and PSS: every process, the broker included, over the window (PSS and threads sampled at its middle); CPU per 1,000 captures compares cases where the cores are saturated.',
  ];
  return `${table(header, rows)}\n\n${[...notes, ...ratios].join('\n')}`;
}

const SECTIONS: Record<string, (r: Json) => string> = { native_queue: nativeQueue, round_trip: roundTrip, audio, python, video, sessions, workers };

const input = process.argv[2];
if (input === undefined) {
  process.stderr.write('usage: node dist/bench/report.js <results.jsonl>\n');
  process.exit(2);
}
for (const line of fs.readFileSync(input, 'utf8').split('\n')) {
  if (line.trim() === '') continue;
  const r = JSON.parse(line) as Json;
  const m = r.machine;
  process.stdout.write(`### ${r.scenario}\n\n`);
  process.stdout.write(`\`${r.command}\` — started ${r.started}, ${r.wall_s} s; ${m.cpus} × ${m.cpu_model}, ${m.node}, liblivekit_ffi ${m.liblivekit_ffi}, load average ${m.loadavg_1_5_15_before[0]} before, ${m.loadavg_1_5_15_after[0]} after\n\n`);
  process.stdout.write(`${SECTIONS[r.scenario]?.(r) ?? '(no table for this scenario)'}\n\n`);
}
