/**
 * Retry delays: exponential backoff with jitter, and HTTP Retry-After parsing. Pure functions
 * (the random source is injectable) so the maths is unit-tested without timers.
 *
 *   delay(attempt) = min(maxMs, initialMs * multiplier^(attempt-1)), then a random part of
 *   `jitter` of it is taken off: delay * (1 - jitter * random()), random() in [0, 1).
 *
 * Jitter only ever shortens a delay, so `maxMs` stays a hard ceiling and many agents that lost
 * the same server do not come back in lockstep.
 */

export interface BackoffPolicy {
  /** first delay */
  initialMs: number;
  /** ceiling of any delay */
  maxMs: number;
  /** growth per attempt, >= 1 */
  multiplier: number;
  /** fraction of each delay that is random, 0..1 */
  jitter: number;
}

/**
 * The delay before retry number `attempt` (1 = the first retry). `random` returns a number in
 * [0, 1), like Math.random.
 */
export function backoffDelay(policy: BackoffPolicy, attempt: number, random: () => number = Math.random): number {
  const n = Math.max(1, Math.floor(attempt));
  const initial = Math.max(0, policy.initialMs);
  const max = Math.max(initial, policy.maxMs);
  // Computed in the log domain so a large attempt number never overflows to Infinity/NaN.
  const growth = Math.max(1, policy.multiplier);
  const exp = (n - 1) * Math.log(growth);
  const base = exp > Math.log(max / Math.max(initial, 1e-9)) ? max : Math.min(max, initial * Math.exp(exp));
  const jitter = Math.min(1, Math.max(0, policy.jitter));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.round(base * (1 - jitter * r));
}

/**
 * Parses an HTTP Retry-After header: delta-seconds or an HTTP-date. Returns milliseconds from
 * `nowMs` (never negative), or undefined when the header is absent or not understood.
 */
export function parseRetryAfter(value: string | undefined | null, nowMs: number = Date.now()): number | undefined {
  if (value === undefined || value === null) return undefined;
  const v = value.trim();
  if (v === '') return undefined;
  if (/^\d+$/.test(v)) {
    const s = Number(v);
    return Number.isSafeInteger(s * 1000) ? s * 1000 : undefined;
  }
  if (!/^[A-Za-z]{3},/.test(v)) return undefined; // an HTTP-date (IMF-fixdate) starts with the day name
  const at = Date.parse(v);
  if (Number.isNaN(at)) return undefined;
  return Math.max(0, at - nowMs);
}
