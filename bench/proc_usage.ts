// What a set of processes uses over a measured window, from /proc (test/helpers/proc_stats.ts):
// CPU seconds (utime + stime of every thread, deltas between two snapshots), and at one moment
// inside the window the summed PSS, RSS and thread count. Each group (e.g. "workers", "broker")
// is a list of root pids; their live descendants count with them.
import { procCpuS, procPssMiB, procRssMiB, procThreads, procTree } from '../test/helpers/proc_stats.js';
import { round } from './stats.js';

export interface GroupUsage {
  processes: number;
  cpu_s: number | null;
  pss_mib: number | null;
  rss_mib: number | null;
  threads: number | null;
}

type Groups = Record<string, number[]>;

const cpuByPid = (roots: number[]) => new Map(roots.flatMap(procTree).map((pid) => [pid, procCpuS(pid)] as const));

const sum = (values: (number | null)[], digits: number): number | null =>
  values.length === 0 || values.some((v) => v === null) ? null : round(values.reduce<number>((a, v) => a + v!, 0), digits);

export class UsageWindow {
  private readonly startCpu = new Map<string, Map<number, number | null>>();
  private readonly memory = new Map<string, Omit<GroupUsage, 'cpu_s'>>();

  constructor(private readonly groups: Groups) {}

  /** CPU snapshot at the window's start. */
  start(): void {
    for (const [name, roots] of Object.entries(this.groups)) this.startCpu.set(name, cpuByPid(roots));
  }

  /** PSS, RSS and threads of every process now (call once, inside the window). */
  sampleMemory(): void {
    for (const [name, roots] of Object.entries(this.groups)) {
      const pids = roots.flatMap(procTree);
      this.memory.set(name, {
        processes: pids.length,
        pss_mib: sum(pids.map(procPssMiB), 1),
        rss_mib: sum(pids.map(procRssMiB), 1),
        threads: sum(pids.map(procThreads), 0),
      });
    }
  }

  /**
   * CPU snapshot at the window's end; per group and in total, the CPU seconds used in between
   * (a process that started inside the window counts from 0; one that ended inside it is missed).
   */
  end(): Record<string, GroupUsage> {
    const out: Record<string, GroupUsage> = {};
    for (const [name, roots] of Object.entries(this.groups)) {
      const before = this.startCpu.get(name) ?? new Map<number, number | null>();
      const deltas = [...cpuByPid(roots)].map(([pid, now]) => {
        const then = before.has(pid) ? before.get(pid)! : 0;
        return now === null || then === null ? null : now - then;
      });
      const mem = this.memory.get(name) ?? { processes: roots.length, pss_mib: null, rss_mib: null, threads: null };
      out[name] = { ...mem, cpu_s: sum(deltas, 3) };
    }
    const all = Object.values(out);
    out.total = {
      processes: all.reduce((a, g) => a + g.processes, 0),
      cpu_s: sum(all.map((g) => g.cpu_s), 3),
      pss_mib: sum(all.map((g) => g.pss_mib), 1),
      rss_mib: sum(all.map((g) => g.rss_mib), 1),
      threads: sum(all.map((g) => g.threads), 0),
    };
    return out;
  }
}
