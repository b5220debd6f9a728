/**
 * A Kafka client library's own log lines, into the gateway's logger: warnings and errors at most
 * once per distinct message every 10 s (a client logs every retry of an outage), the rest at
 * debug. Bounded: at most 1000 distinct messages are remembered.
 */
import type { Logger } from '../../../shared/log.js';

export type ClientLogLevel = 'error' | 'warn' | 'debug';

const EVERY_MS = 10_000;
const MAX_KEYS = 1000;

export function clientLogger(log: Logger, library: string): (level: ClientLogLevel, key: string, message: string, extra?: Record<string, unknown>) => void {
  const last = new Map<string, number>();
  return (level, key, message, extra = {}) => {
    if (level === 'debug') {
      log.debug(extra, `${library}: ${message}`);
      return;
    }
    const now = Date.now();
    if ((last.get(key) ?? 0) > now - EVERY_MS) return;
    if (last.size >= MAX_KEYS) last.clear();
    last.set(key, now);
    log[level](extra, `${library}: ${message}`);
  };
}
