/**
 * Topic policy: which Kafka topics a sender (an HTTP token, or everything arriving over NATS)
 * may write to. A policy is a list of patterns; `*` matches any run of characters (including
 * none), every other character matches itself. A topic is allowed when any pattern matches the
 * whole name. An empty list allows nothing.
 *
 * Patterns are compiled once, at construction; `allows()` is a cached lookup on the hot path
 * (one call per chunk, not per line).
 */

const CACHE_LIMIT = 4096;

function compile(pattern: string): RegExp {
  const body = pattern
    .split('*')
    .map((part) => part.replace(/[.+?^${}()|[\]\\]/g, '\\$&'))
    .join('.*');
  return new RegExp(`^${body}$`, 's');
}

export class TopicPolicy {
  readonly patterns: readonly string[];
  private readonly matchAll: boolean;
  private readonly regexes: readonly RegExp[];
  private readonly cache = new Map<string, boolean>();

  constructor(patterns: readonly string[]) {
    for (const [i, p] of patterns.entries()) {
      if (typeof p !== 'string' || p.length === 0) throw new TypeError(`topic pattern ${i} must be a non-empty string`);
    }
    this.patterns = Object.freeze([...patterns]);
    this.matchAll = patterns.some((p) => /^\*+$/.test(p));
    this.regexes = patterns.map(compile);
  }

  /** True when a pattern matches the whole topic name. */
  allows(topic: string): boolean {
    if (this.matchAll) return true;
    const known = this.cache.get(topic);
    if (known !== undefined) return known;
    const ok = this.regexes.some((r) => r.test(topic));
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(topic, ok);
    return ok;
  }

  /** For log lines and errors: the patterns as one string. */
  describe(): string {
    return this.patterns.length === 0 ? '(none)' : this.patterns.join(', ');
  }
}
