// CPU time and memory of a whole process (every thread), read from /proc: the broker's, a Python
// worker's or this process's own, measured the same way by the benchmarks and the reliability suites.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

let clkTck: number | undefined;
function clockTicks(): number {
  if (clkTck === undefined) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime + stime of a process (all its threads) in seconds; null if unreadable. */
export function procCpuS(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(rest[11]) + Number(rest[12])) / clockTicks();
  } catch {
    return null;
  }
}

/** The number a line of /proc/<pid>/<file> holds (`re`'s first group); null if unreadable. */
function procNumber(pid: number | undefined, file: string, re: RegExp): number | null {
  if (pid === undefined) return null;
  try {
    const m = re.exec(fs.readFileSync(`/proc/${pid}/${file}`, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

const mib = (kib: number | null) => (kib === null ? null : kib / 1024);

/** Resident set size in MiB (VmRSS); null if unreadable. */
export const procRssMiB = (pid: number | undefined) => mib(procNumber(pid, 'status', /^VmRSS:\s+(\d+) kB$/m));

/** Proportional set size in MiB (smaps_rollup's Pss: shared pages split among their users); null if unreadable. */
export const procPssMiB = (pid: number | undefined) => mib(procNumber(pid, 'smaps_rollup', /^Pss:\s+(\d+) kB$/m));

/** Number of threads (status's Threads); null if unreadable. */
export const procThreads = (pid: number | undefined) => procNumber(pid, 'status', /^Threads:\s+(\d+)$/m);

/** `pid` and its live descendants (from every thread's /proc/<pid>/task/<tid>/children), parents first. */
export function procTree(pid: number): number[] {
  const tree: number[] = [];
  const queue = [pid];
  while (queue.length > 0) {
    const p = queue.shift()!;
    let tids: string[];
    try {
      tids = fs.readdirSync(`/proc/${p}/task`);
    } catch {
      continue; // exited
    }
    tree.push(p);
    for (const tid of tids) {
      try {
        const children = fs.readFileSync(`/proc/${p}/task/${tid}/children`, 'utf8').trim();
        if (children !== '') queue.push(...children.split(' ').map(Number));
      } catch {
        // the thread exited
      }
    }
  }
  return tree;
}
