#!/usr/bin/env node
// Where a process's JS thread spent its time: reads a V8 .cpuprofile (node --cpu-prof) and prints
// JSON with the top functions by self time and by total (inclusive) time, as shares of all samples.
// The same file opens as a flame graph in Chrome DevTools (Performance) or speedscope.
import fs from 'node:fs';
import path from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
}

export interface ProfileSummary {
  file: string;
  duration_s: number;
  samples: number;
  /** Share of samples the thread was idle (waiting in epoll) and spent in GC. */
  idle_share: number;
  gc_share: number;
  self: { function: string; share: number }[];
  total: { function: string; share: number }[];
}

const label = (n: ProfileNode) => {
  const { functionName, url, lineNumber } = n.callFrame;
  const where = url ? `${path.basename(url)}:${lineNumber + 1}` : '';
  return `${functionName || '(anonymous)'}${where ? ` ${where}` : ''}`;
};

export function summarizeProfile(file: string, top = 25): ProfileSummary {
  const profile = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const samples = profile.nodes.reduce((a, n) => a + (n.hitCount ?? 0), 0) || 1;
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  // Inclusive time counts a function once per stack, however deeply it recurses.
  const walk = (id: number, onStack: Set<string>): number => {
    const n = byId.get(id)!;
    const name = label(n);
    let hits = n.hitCount ?? 0;
    self.set(name, (self.get(name) ?? 0) + hits);
    const pushed = !onStack.has(name);
    if (pushed) onStack.add(name);
    for (const c of n.children ?? []) hits += walk(c, onStack);
    if (pushed) {
      onStack.delete(name);
      total.set(name, (total.get(name) ?? 0) + hits);
    }
    return hits;
  };
  walk(profile.nodes[0]!.id, new Set());
  const share = (v: number) => Math.round((v / samples) * 1000) / 1000;
  const ranked = (m: Map<string, number>, skip: (name: string) => boolean) =>
    [...m]
      .filter(([name]) => !skip(name))
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, v]) => ({ function: fn, share: share(v) }));
  const synthetic = (name: string) => name.startsWith('(root)') || name.startsWith('(program)') || name.startsWith('(idle)');
  return {
    file,
    duration_s: Math.round((profile.endTime - profile.startTime) / 1e4) / 100,
    samples,
    idle_share: share(self.get('(idle)') ?? 0),
    gc_share: share(self.get('(garbage collector)') ?? 0),
    self: ranked(self, (name) => name.startsWith('(root)') || name.startsWith('(idle)')),
    total: ranked(total, synthetic),
  };
}

if (require.main === module) {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    process.stderr.write('usage: node dist/bench/cpu_profile.js <file.cpuprofile>...\n');
    process.exit(2);
  }
  for (const f of files) process.stdout.write(JSON.stringify(summarizeProfile(f)) + '\n');
}
