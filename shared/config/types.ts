/**
 * Small zod building blocks shared by the agent's and the gateway's config schemas. Option
 * names carry their unit (`...Ms`, `...Bytes`); byte sizes also accept strings such as "256KiB".
 */
import { z } from 'zod';

const UNITS: Record<string, number> = {
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Parses `512`, `"512"`, `"256KiB"`, `"1.5 GB"`; undefined when it is not a size. */
export function parseBytes(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(v);
  if (!m) return undefined;
  const unit = UNITS[(m[2] || 'b').toLowerCase()];
  if (unit === undefined) return undefined;
  const n = Math.round(Number(m[1]) * unit);
  return Number.isSafeInteger(n) ? n : undefined;
}

/** A byte size: an integer, or a string with a unit (B, KB, MB, GB, KiB, MiB, GiB, TiB). */
export function bytes(opts: { min?: number; max?: number } = {}) {
  const min = opts.min ?? 0;
  const max = opts.max ?? Number.MAX_SAFE_INTEGER;
  return z.union([z.number(), z.string()]).transform((v, ctx) => {
    const n = parseBytes(v);
    if (n === undefined) {
      ctx.addIssue({ code: 'custom', message: `expected a byte size such as 1048576 or "1MiB", got ${JSON.stringify(v)}` });
      return z.NEVER;
    }
    if (n < min || n > max) {
      ctx.addIssue({ code: 'custom', message: `must be between ${min} and ${max} bytes, got ${n}` });
      return z.NEVER;
    }
    return n;
  });
}

/** The longest delay Node's timers take (2^31-1 ms, about 24.8 days); a longer one fires after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;
/** Upper bound for durations that are never timers (retentions, stream ages): `ms({ max: MAX_AGE_MS })`. */
export const MAX_AGE_MS = 365 * 24 * 3600 * 1000;

/**
 * Milliseconds, a non-negative integer, at most MAX_TIMER_MS unless `max` says otherwise: every
 * duration may end up in a setTimeout, so only keys that are never timers (Kafka retention,
 * JetStream ages, comparisons with a clock) pass a larger `max`.
 */
export function ms(opts: { min?: number; max?: number } = {}) {
  const max = opts.max ?? MAX_TIMER_MS;
  const why = max === MAX_TIMER_MS ? ' (about 24.8 days: the longest a timer can wait)' : '';
  return z
    .number()
    .int()
    .min(opts.min ?? 0)
    .max(max, { message: `must be at most ${max} ms${why}` });
}

/** `host:port` to listen on; port 0 picks a free one. */
export const listenAddress = z
  .string()
  .regex(/^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]*):\d{1,5}$/, 'expected "host:port", e.g. "127.0.0.1:9464"');

export function parseListen(addr: string): { host: string; port: number } {
  const i = addr.lastIndexOf(':');
  const host = addr.slice(0, i).replace(/^\[|\]$/g, '') || '0.0.0.0';
  return { host, port: Number(addr.slice(i + 1)) };
}

/** A regular expression given as a string; checked by compiling it. */
export const regexString = z.string().refine(
  (s) => {
    try {
      new RegExp(s);
      return true;
    } catch {
      return false;
    }
  },
  { message: 'not a valid regular expression' },
);

export const logLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']);

/** TLS client or server material, as file paths. */
export const tlsFiles = z.strictObject({
  caFile: z.string().optional().describe('PEM file of the CA(s) to trust'),
  certFile: z.string().optional().describe('PEM certificate (client cert for mTLS, or server cert)'),
  keyFile: z.string().optional().describe('PEM private key for certFile'),
});
