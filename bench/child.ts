// Runs one benchmark case in a fresh child process of run.js (`run.js --child <name> <json spec>`):
// a process per case keeps CPU time, RSS and the in-process library (which allows one
// initialization per process) to that case alone. Results come back over IPC; the child's stdout
// goes to our stderr, as our stdout carries only the final JSON.
import { fork } from 'node:child_process';
import path from 'node:path';

export function runInChild<T>(name: string, spec: unknown, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = fork(path.join(__dirname, 'run.js'), ['--child', name, JSON.stringify(spec)], {
      stdio: ['ignore', 'pipe', 'inherit', 'ipc'],
    });
    child.stdout!.pipe(process.stderr);
    let result: T | undefined;
    let error: string | undefined;
    child.on('message', (m: { result?: T; error?: string }) => {
      result = m.result;
      error = m.error;
    });
    const timer = setTimeout(() => {
      error = `timed out after ${timeoutMs} ms`;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      if (result !== undefined) resolve(result);
      else reject(new Error(`${name}: ${error ?? `child exited (${code ?? signal}) without a result`}`));
    });
  });
}
