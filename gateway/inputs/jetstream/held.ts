/**
 * Agents held because Kafka (or the topic policy) refuses their chunk for a *setting*: the
 * topic does not exist while auto-creation is off, authorization is refused, `nats.allowTopics`
 * does not allow it. The chunk is not at fault (its agent deleted it after the PubAck), so it is
 * never dead-lettered: it waits until the operator fixes the setting.
 *
 * Per agent: the refused chunk is the head of its agent's queue, and every later chunk of that
 * agent the input receives is queued behind it, in stream order, so the agent's files keep
 * their order; other agents keep flowing. The head alone is tried again (`due()`) with backoff
 * (1 s doubling to `maxMs`, jitter); once it is done (produced, dead-lettered for its own fault,
 * given up) the agent is released and the rest of its queue is handed back, in order, before
 * anything newer.
 *
 * Bounded: `bytes` and `count` say how much is kept; the input stops fetching when they reach
 * its limits (then the whole input waits, visibly, instead of outgrowing memory or the
 * consumer's max_ack_pending).
 *
 * Generic over the message type; the clock and jitter are injectable for tests.
 */
import { backoffDelay, type BackoffPolicy } from '../../../shared/backoff.js';

interface HeldAgent<M> {
  queue: M[];
  bytes: number;
  attempt: number;
  nextAt: number;
  /** true while the head is out being tried */
  trying: boolean;
  reason: string;
  since: number;
}

export interface HeldAgentsOptions<M> {
  maxMs: number;
  size: (m: M) => number;
  now?: () => number;
  random?: () => number;
}

export interface HeldSummary {
  agent: string;
  chunks: number;
  sinceMs: number;
  reason: string;
}

export class HeldAgents<M> {
  readonly #agents = new Map<string, HeldAgent<M>>();
  readonly #policy: BackoffPolicy;
  readonly #size: (m: M) => number;
  readonly #now: () => number;
  readonly #random: () => number;
  #count = 0;
  #bytes = 0;

  constructor(opts: HeldAgentsOptions<M>) {
    this.#policy = { initialMs: Math.min(1000, opts.maxMs), maxMs: opts.maxMs, multiplier: 2, jitter: 0.2 };
    this.#size = opts.size;
    this.#now = opts.now ?? Date.now;
    this.#random = opts.random ?? Math.random;
  }

  /** agents held */
  get agents(): number {
    return this.#agents.size;
  }

  /** messages kept (heads included) */
  get count(): number {
    return this.#count;
  }

  get bytes(): number {
    return this.#bytes;
  }

  has(agent: string): boolean {
    return this.#agents.has(agent);
  }

  /** True when `m` is the head of `agent`'s queue (the chunk that was refused). */
  isHead(agent: string, m: M): boolean {
    return this.#agents.get(agent)?.queue[0] === m;
  }

  /**
   * Keeps `m` behind `agent`'s held chunks; when the agent is not held yet, `m` becomes its
   * head (refused for `reason`). Returns true when this started holding the agent.
   */
  hold(agent: string, m: M, reason: string): boolean {
    let a = this.#agents.get(agent);
    const started = a === undefined;
    if (a === undefined) {
      const now = this.#now();
      a = { queue: [], bytes: 0, attempt: 1, nextAt: now + this.#delay(1), trying: false, reason, since: now };
      this.#agents.set(agent, a);
    }
    const size = this.#size(m);
    a.queue.push(m);
    a.bytes += size;
    this.#count++;
    this.#bytes += size;
    return started;
  }

  /** The head was refused again for a setting: wait longer. Returns the attempt number. */
  again(agent: string, reason: string): number {
    const a = this.#agents.get(agent);
    if (!a) return 0;
    a.attempt++;
    a.trying = false;
    a.reason = reason;
    a.nextAt = this.#now() + this.#delay(a.attempt);
    return a.attempt;
  }

  /** Heads whose next try is due; they are marked as being tried until again() or release(). */
  due(): Array<{ agent: string; head: M }> {
    const now = this.#now();
    const out: Array<{ agent: string; head: M }> = [];
    for (const [agent, a] of this.#agents) {
      if (!a.trying && a.nextAt <= now && a.queue.length > 0) {
        a.trying = true;
        out.push({ agent, head: a.queue[0]! });
      }
    }
    return out;
  }

  /** When the next head is due (ms since epoch), or undefined when none waits. */
  nextDueAt(): number | undefined {
    let next: number | undefined;
    for (const a of this.#agents.values()) if (!a.trying && (next === undefined || a.nextAt < next)) next = a.nextAt;
    return next;
  }

  /**
   * The head is done (produced, dead-lettered or given up): stops holding the agent and returns
   * the rest of its queue, in order, to be handled before anything newer.
   */
  release(agent: string): { rest: M[]; attempts: number; heldMs: number } {
    const a = this.#agents.get(agent);
    if (!a) return { rest: [], attempts: 0, heldMs: 0 };
    this.#agents.delete(agent);
    this.#count -= a.queue.length;
    this.#bytes -= a.bytes;
    return { rest: a.queue.slice(1), attempts: a.attempt, heldMs: this.#now() - a.since };
  }

  /** Every message kept, agent by agent (to give them all back on stop). */
  all(): M[] {
    return [...this.#agents.values()].flatMap((a) => a.queue);
  }

  /** The held agents, longest held first, for /readyz and logs. */
  summary(limit = 5): HeldSummary[] {
    const now = this.#now();
    return [...this.#agents.entries()]
      .sort((x, y) => x[1].since - y[1].since)
      .slice(0, limit)
      .map(([agent, a]) => ({ agent, chunks: a.queue.length, sinceMs: now - a.since, reason: a.reason }));
  }

  #delay(attempt: number): number {
    return backoffDelay(this.#policy, attempt, this.#random);
  }
}
