// Small numeric helpers shared by the benchmark scenarios.

export interface Summary {
  count: number;
  p50: number | null;
  p99: number | null;
  p999: number | null;
  max: number | null;
  mean: number | null;
}

/** Nearest-rank percentile (q in 0..1) of an ascending array; NaN when empty. */
export function percentile(sorted: ArrayLike<number>, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.max(1, Math.ceil(q * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/** count/p50/p99/p99.9/max/mean of `values`, rounded to `digits` decimals. */
export function summarize(values: ArrayLike<number>, digits = 3): Summary {
  const sorted = Float64Array.from(values).sort();
  let sum = 0;
  for (const v of sorted) sum += v;
  return {
    count: sorted.length,
    p50: round(percentile(sorted, 0.5), digits),
    p99: round(percentile(sorted, 0.99), digits),
    p999: round(percentile(sorted, 0.999), digits),
    max: round(sorted.length > 0 ? sorted[sorted.length - 1]! : NaN, digits),
    mean: round(sorted.length > 0 ? sum / sorted.length : NaN, digits),
  };
}

/** The quantiles charts draw distributions from, as [q, value] pairs. */
export const CHART_QUANTILES = [0.01, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999];

export function quantiles(values: ArrayLike<number>, digits = 3): [number, number | null][] {
  const sorted = Float64Array.from(values).sort();
  return CHART_QUANTILES.map((q) => [q, round(percentile(sorted, q), digits)]);
}

/** Rounds to `digits` decimals; NaN becomes null, as JSON has no NaN. */
export function round(value: number, digits = 3): number | null {
  if (!Number.isFinite(value)) return null;
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}

/** Monotonic clock in ms (process.hrtime), the clock every latency here is measured with. */
export function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Keeps the JS thread busy for `ms`, the way a long synchronous task would. */
export function busyWait(ms: number): void {
  const end = nowMs() + ms;
  while (nowMs() < end) {
    // spin
  }
}

export const log = (message: string) => process.stderr.write(`[bench] ${message}\n`);
