/**
 * pino logger factory: one root logger per process, a child per component
 * (`log.child({ component: 'spool' })`). JSON to stdout by default; level from config or
 * FERRY_LOG_LEVEL.
 */
import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

export interface LogOptions {
  level?: LevelWithSilent;
  /** program name, e.g. ferry-agent */
  name: string;
  /** extra fields on every line (agent id, gateway instance) */
  base?: Record<string, unknown>;
  /** destination file descriptor; default 1 (stdout) */
  fd?: number;
}

export function createLogger(opts: LogOptions): Logger {
  const envLevel = process.env.FERRY_LOG_LEVEL as LevelWithSilent | undefined;
  return pino(
    {
      name: opts.name,
      level: envLevel ?? opts.level ?? 'info',
      base: { pid: process.pid, ...opts.base },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    pino.destination({ fd: opts.fd ?? 1, sync: false }),
  );
}

/** A logger that writes nothing, for unit tests and library use. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
