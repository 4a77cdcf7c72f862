#!/usr/bin/env node
// Charts for BENCHMARKS.md from a results file of run.js (`--out results.jsonl`), rendered to SVG
// with Vega-Lite: latency distributions per path, so the broker's cost is seen against the anchors.
//   node dist/bench/chart.js bench/results/latest.jsonl bench/charts
import fs from 'node:fs';
import path from 'node:path';

type Row = Record<string, string | number | null>;
type Json = Record<string, unknown>;

interface QuantileCase {
  quantiles: [number, number | null][];
}

/**
 * [q, value] pairs → chart rows, dropping the empty ones. The x position is the quantile's "nines"
 * (-log10(1 - q): p90 = 1, p99 = 2, p99.9 = 3), as latency percentile plots draw tails.
 */
function quantileRows(c: QuantileCase, fields: Row): Row[] {
  return c.quantiles.filter(([, v]) => v !== null && v > 0).map(([q, v]) => ({ ...fields, quantile: q, nines: -Math.log10(1 - q), value: v }));
}

function audioRows(results: Json[]): Row[] {
  const rows: Row[] = [];
  const fanin = results.find((r) => r.audio_fanin)?.audio_fanin as { cases: Json[] } | undefined;
  for (const c of fanin?.cases ?? []) {
    if (!Array.isArray(c.latency_quantiles_ms)) continue;
    const label = c.path === 'broker' ? 'Node, through the broker' : 'Node, in-process';
    rows.push(...quantileRows({ quantiles: c.latency_quantiles_ms as [number, number][] }, { path: label, streams: `${c.streams} streams` }));
  }
  const python = results.find((r) => r.python_audio)?.python_audio as { cases: Json[] } | undefined;
  for (const c of python?.cases ?? []) {
    for (const [key, label] of [
      ['in_process', 'Python SDK, in-process'],
      ['broker', 'Python SDK, through the broker'],
    ] as const) {
      const run = c[key] as Json | null;
      if (run && Array.isArray(run.latency_quantiles_ms)) {
        rows.push(...quantileRows({ quantiles: run.latency_quantiles_ms as [number, number][] }, { path: label, streams: `${c.streams} streams` }));
      }
    }
  }
  return rows;
}

function roundTripRows(results: Json[]): Row[] {
  const rt = results.find((r) => r.round_trip)?.round_trip as { cases: Json[] } | undefined;
  const label: Record<string, string> = { 'in-process': 'in-process (Node-API)', unix: 'broker, Unix socket', tcp: 'broker, TCP loopback' };
  return (rt?.cases ?? [])
    .filter((c) => Array.isArray(c.request_quantiles_us))
    .flatMap((c) => quantileRows({ quantiles: c.request_quantiles_us as [number, number][] }, { path: label[String(c.transport)] ?? String(c.transport) }));
}

const NINES_AXIS = {
  values: [0, Math.log10(2), 1, 2, 3],
  labelExpr: "datum.value < 0.1 ? 'p0' : datum.value < 0.5 ? 'p50' : datum.value < 1.5 ? 'p90' : datum.value < 2.5 ? 'p99' : 'p99.9'",
};

/** A distribution as value (y, log) against percentile (x, in nines), one line per path. */
function distributionSpec(title: string, yTitle: string, rows: Row[], facet?: string): Json {
  const layer: Json = {
    mark: { type: 'line', point: true },
    encoding: {
      x: { field: 'nines', type: 'quantitative', scale: { domain: [0, 3] }, title: 'percentile', axis: NINES_AXIS },
      y: { field: 'value', type: 'quantitative', scale: { type: 'log' }, title: yTitle },
      color: { field: 'path', type: 'nominal', title: null, legend: { orient: 'bottom', columns: 2, labelLimit: 0 } },
      tooltip: [{ field: 'path' }, { field: 'quantile' }, { field: 'value' }],
    },
  };
  const base = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', title, data: { values: rows }, config: { font: 'sans-serif' } };
  if (facet === undefined) return { ...base, width: 520, height: 260, ...layer };
  return { ...base, facet: { field: facet, type: 'ordinal', title: null, sort: { field: 'order' } }, columns: 2, spec: { width: 300, height: 200, ...layer } };
}

async function render(spec: Json, file: string): Promise<void> {
  const vl = await import('vega-lite');
  const vega = await import('vega');
  const view = new vega.View(vega.parse(vl.compile(spec as never).spec), { renderer: 'none' });
  fs.writeFileSync(file, await view.toSVG());
  view.finalize();
}

async function main(): Promise<void> {
  const [input, outDir] = process.argv.slice(2);
  if (input === undefined || outDir === undefined) {
    process.stderr.write('usage: node dist/bench/chart.js <results.jsonl> <output dir>\n');
    process.exit(2);
  }
  const results = fs
    .readFileSync(input, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Json);
  fs.mkdirSync(outDir, { recursive: true });
  const audio = audioRows(results).map((r) => ({ ...r, order: parseInt(String(r.streams), 10) }));
  const written: string[] = [];
  if (audio.length > 0) {
    const file = path.join(outDir, 'audio_latency.svg');
    await render(distributionSpec('Capture-to-client audio latency (10 ms frames, 100 frames/s per stream)', 'latency (ms, log)', audio, 'streams'), file);
    written.push(file);
  }
  const rt = roundTripRows(results);
  if (rt.length > 0) {
    const file = path.join(outDir, 'round_trip.svg');
    await render(distributionSpec('Request round trip: NewAudioResampler, one at a time', 'round trip (µs, log)', rt), file);
    written.push(file);
  }
  process.stdout.write(JSON.stringify({ written }) + '\n');
}

main().catch((err) => {
  process.stderr.write(`chart failed: ${String(err?.stack ?? err)}\n`);
  process.exit(1);
});
