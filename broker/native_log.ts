// liblivekit_ffi's own log records (FfiEvent.logs, sent because the broker initializes it with
// capture_logs) as pino records of the broker's log, keeping the library's target and location.
import type { Logger } from 'pino';

export interface LogRecord {
  level: number;
  target: string;
  modulePath?: string;
  file?: string;
  line?: number;
  message: string;
}

// livekit.proto.LogLevel: LOG_ERROR=0, LOG_WARN, LOG_INFO, LOG_DEBUG, LOG_TRACE.
const LEVELS = ['error', 'warn', 'info', 'debug', 'trace'] as const;

export function logNativeRecords(log: Logger, records: readonly LogRecord[]): void {
  for (const r of records) {
    const level = LEVELS[r.level] ?? 'info';
    if (!log.isLevelEnabled(level)) continue;
    log[level]({ target: r.target, module: r.modulePath, file: r.file, line: r.line }, r.message);
  }
}
