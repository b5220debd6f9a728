/**
 * Topic policy: which Kafka topics a sender (an HTTP token, or everything arriving over NATS)
 * may write to. A policy is a list of patterns; `*` matches any run of characters (including
 * none), every other character matches itself. A topic is allowed when any pattern matches the
 * whole name and it is not reserved. An empty list allows nothing.
 *
 * Reserved topics are refused on every input whatever the patterns say (even `*`): the
 * gateway's own committed-chunk topic (`kafka.committedTopic`: a forged marker there makes the
 * gateway drop a victim's chunks as duplicates), Kafka's internal topics (`__*`, e.g.
 * `__consumer_offsets`, `__transaction_state`), and, unless `allowUnderscoreTopics`, every other
 * topic starting with `_` (Connect, Streams, Schema Registry keep their state there).
 * `reservedReason()` tells a reserved topic (hostile: dead-letter, 403) from one the patterns do
 * not allow (a setting the operator may change).
 *
 * The same pattern matcher serves agent id patterns (`http.tokens[].agents`): `PatternSet`.
 * Patterns are compiled once, at construction; lookups are cached (bounded) on the hot path
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

/** A list of `*` patterns matched against whole names, with a bounded cache of answers. */
export class PatternSet {
  readonly patterns: readonly string[];
  private readonly matchAll: boolean;
  private readonly regexes: readonly RegExp[];
  private readonly cache = new Map<string, boolean>();

  constructor(patterns: readonly string[], what = 'pattern') {
    for (const [i, p] of patterns.entries()) {
      if (typeof p !== 'string' || p.length === 0) throw new TypeError(`${what} ${i} must be a non-empty string`);
    }
    this.patterns = Object.freeze([...patterns]);
    this.matchAll = patterns.some((p) => /^\*+$/.test(p));
    this.regexes = patterns.map(compile);
  }

  /** True when a pattern matches the whole name. */
  matches(name: string): boolean {
    if (this.matchAll) return true;
    const known = this.cache.get(name);
    if (known !== undefined) return known;
    const ok = this.regexes.some((r) => r.test(name));
    if (this.cache.size >= CACHE_LIMIT) this.cache.clear();
    this.cache.set(name, ok);
    return ok;
  }

  /** For log lines and errors: the patterns as one string. */
  describe(): string {
    return this.patterns.length === 0 ? '(none)' : this.patterns.join(', ');
  }
}

/** What is reserved: from the gateway config (`reservedTopicsOf`), or the defaults. */
export interface ReservedTopics {
  /** kafka.committedTopic */
  committedTopic: string;
  /** allowUnderscoreTopics: topics starting with a single `_` may be written */
  allowUnderscore: boolean;
}

export const DEFAULT_RESERVED: ReservedTopics = Object.freeze({ committedTopic: 'ferry.committed-chunks', allowUnderscore: false });

export function reservedTopicsOf(config: { kafka: { committedTopic: string }; allowUnderscoreTopics: boolean }): ReservedTopics {
  return { committedTopic: config.kafka.committedTopic, allowUnderscore: config.allowUnderscoreTopics };
}

/** Why `topic` is reserved (a phrase for errors and dead-letter reasons), or null when it is not. */
export function reservedReason(topic: string, reserved: ReservedTopics = DEFAULT_RESERVED): string | null {
  if (topic === reserved.committedTopic) return 'it is the gateway\'s committed-chunk topic (kafka.committedTopic)';
  if (topic.startsWith('__')) return 'it is an internal Kafka topic (starts with "__")';
  if (topic.startsWith('_') && !reserved.allowUnderscore) return 'it is an internal topic (starts with "_"; allowUnderscoreTopics is false)';
  return null;
}

export class TopicPolicy {
  readonly reserved: ReservedTopics;
  private readonly set: PatternSet;

  constructor(patterns: readonly string[], reserved: ReservedTopics = DEFAULT_RESERVED) {
    this.set = new PatternSet(patterns, 'topic pattern');
    this.reserved = reserved;
  }

  get patterns(): readonly string[] {
    return this.set.patterns;
  }

  /** True when a pattern matches the whole topic name and the topic is not reserved. */
  allows(topic: string): boolean {
    return this.set.matches(topic) && this.reservedReason(topic) === null;
  }

  /** Why the topic is reserved (refused whatever the patterns say), or null. */
  reservedReason(topic: string): string | null {
    return reservedReason(topic, this.reserved);
  }

  /** For log lines and errors: the patterns as one string. */
  describe(): string {
    return this.set.describe();
  }
}
