// Bounded polling instead of sleeps: `waitFor(predicate, timeoutMs, what)`.
import { setTimeout as sleep } from 'node:timers/promises';
import { WaitTimeoutError } from './errors.js';

export interface WaitForOptions {
  /** First poll interval; it grows by half each round up to `maxIntervalMs`. Default 10 ms. */
  intervalMs?: number;
  /** Default 250 ms. */
  maxIntervalMs?: number;
  /** Stops polling early; the promise rejects with the signal's reason. */
  signal?: AbortSignal;
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Calls `predicate` until it returns (or resolves to) a truthy value, and returns that value.
 * Errors thrown by the predicate count as "not yet"; the last one is reported on timeout as
 * `timed out after <timeoutMs>ms waiting for <what> (last error: ...)` with it as `cause`.
 */
export async function waitFor<T>(
  predicate: () => T | Promise<T>,
  timeoutMs: number,
  what: string,
  opts: WaitForOptions = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  const maxInterval = opts.maxIntervalMs ?? 250;
  let interval = opts.intervalMs ?? 10;
  let lastError: unknown;
  let attempts = 0;
  for (;;) {
    opts.signal?.throwIfAborted();
    attempts++;
    try {
      const value = await predicate();
      if (value) return value;
      lastError = undefined;
    } catch (err) {
      lastError = err;
    }
    opts.signal?.throwIfAborted();
    const left = deadline - Date.now();
    if (left <= 0) {
      const detail = lastError === undefined ? '' : ` (last error: ${describe(lastError)})`;
      throw new WaitTimeoutError(
        `timed out after ${timeoutMs}ms waiting for ${what}${detail} [${attempts} attempts]`,
        lastError === undefined ? undefined : { cause: lastError },
      );
    }
    await sleep(Math.min(interval, left), undefined, opts.signal ? { signal: opts.signal } : undefined);
    interval = Math.min(maxInterval, Math.ceil(interval * 1.5));
  }
}

/** True when `url` answers 2xx within 2 s; false on any other answer or error (for readiness polls). */
export async function httpOk(url: string): Promise<boolean> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
    return res.ok;
  } catch {
    return false;
  }
}
