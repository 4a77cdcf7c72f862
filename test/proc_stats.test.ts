// The /proc accounting the benchmarks report (test/helpers/proc_stats.ts, bench/proc_usage.ts),
// checked on this test's own process and a child it starts: no timing, only that the readings
// agree with what the process knows of itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import { procCpuS, procPssMiB, procRssMiB, procThreads, procTree } from './helpers/proc_stats.js';
import { UsageWindow } from '../bench/proc_usage.js';
import { busyWait } from '../bench/stats.js';

/** A pid that no process has (pid_max bounds the ones the kernel hands out). */
const NO_PID = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8')) + 1;

test('CPU seconds from /proc/<pid>/stat match getrusage of the same process', () => {
  const [proc0, self0] = [procCpuS(process.pid)!, process.cpuUsage()];
  busyWait(300);
  const [proc1, self1] = [procCpuS(process.pid)!, process.cpuUsage(self0)];
  // /proc counts in clock ticks (10 ms): allow a few ticks either way.
  assert.ok(Math.abs(proc1 - proc0 - (self1.user + self1.system) / 1e6) < 0.05, `${proc1 - proc0} vs ${(self1.user + self1.system) / 1e6}`);
});

test('PSS is positive and at most RSS; Threads counts the task directory', () => {
  const pss = procPssMiB(process.pid)!;
  const rss = procRssMiB(process.pid)!;
  assert.ok(pss > 0 && pss <= rss + 1, `pss ${pss} rss ${rss}`);
  assert.equal(procThreads(process.pid), fs.readdirSync('/proc/self/task').length);
});

test('readings of a process that does not exist are null', () => {
  assert.equal(procCpuS(NO_PID), null);
  assert.equal(procPssMiB(NO_PID), null);
  assert.equal(procThreads(NO_PID), null);
  assert.deepEqual(procTree(NO_PID), []);
});

test('procTree lists live descendants, and UsageWindow counts them with their root', async () => {
  // A shell whose own child burns CPU: the grandchild must count with this process.
  const child = spawn('sh', ['-c', 'sh -c "while :; do :; done" & wait'], { stdio: 'ignore' });
  try {
    let tree: number[] = [];
    for (let i = 0; i < 100 && tree.length < 3; i++) {
      await new Promise((r) => setTimeout(r, 20));
      tree = procTree(process.pid);
    }
    assert.equal(tree[0], process.pid);
    assert.ok(tree.includes(child.pid!), `${tree} includes ${child.pid}`);
    assert.ok(tree.length >= 3, `${tree}: this process, the shell and its child`);

    const usage = new UsageWindow({ self: [process.pid] });
    usage.start();
    const self0 = process.cpuUsage();
    await new Promise((r) => setTimeout(r, 300));
    usage.sampleMemory();
    const self = process.cpuUsage(self0);
    const used = usage.end();
    const spinner = tree.slice(2).reduce((a, pid) => a + (procCpuS(pid) ?? 0), 0);
    assert.ok(spinner > 0, 'the spinning grandchild used CPU');
    // The window holds this process's CPU and the spinner's, which used more than this process did.
    assert.ok(used.self!.cpu_s! > (self.user + self.system) / 1e6, `${used.self!.cpu_s} > own ${(self.user + self.system) / 1e6}`);
    assert.equal(used.self!.processes, tree.length);
    assert.ok(used.self!.threads! >= procThreads(process.pid)! + 2);
    assert.deepEqual(used.total, used.self);
  } finally {
    // Descendants first: once the shell is gone they are no longer its children.
    for (const pid of procTree(child.pid!).reverse()) process.kill(pid, 'SIGKILL');
    if (child.exitCode === null && child.signalCode === null) await once(child, 'exit');
  }
});
