/**
 * Ack leases of the messages the input holds. JetStream redelivers a message (possibly to
 * another gateway) when no ack, nak or `working()` reached the server within ack_wait of the
 * delivery or of the last `working()`. A message whose lease ran out must not be produced by
 * this gateway any more: the redelivery carries it.
 *
 * A lease is counted from when the input received the message, then from when a `working()`
 * was *sent* whose following flush (a server round trip) came back while the lease still ran:
 * the server had it in time, and its timer restarted no earlier than the send. A `working()`
 * sent while disconnected and delivered after the lease ran out is not counted. A margin
 * (a tenth of ack_wait, at most 1 s) covers the delivery's own travel time.
 *
 * Keyed by anything (JsMsg in the input, plain objects in tests); the clock is injectable.
 */

interface Lease {
  /** the lease is known to run at least until `confirmedAt + ackWaitMs` (server side) */
  confirmedAt: number;
}

export class Leases<K> {
  readonly #leases = new Map<K, Lease>();
  readonly #ackWaitMs: number;
  readonly #marginMs: number;
  readonly #now: () => number;

  constructor(ackWaitMs: number, now: () => number = Date.now) {
    this.#ackWaitMs = ackWaitMs;
    this.#marginMs = Math.min(1000, Math.floor(ackWaitMs / 10));
    this.#now = now;
  }

  get size(): number {
    return this.#leases.size;
  }

  keys(): K[] {
    return [...this.#leases.keys()];
  }

  has(key: K): boolean {
    return this.#leases.has(key);
  }

  /** Starts the lease of a message just received. */
  add(key: K): void {
    this.#leases.set(key, { confirmedAt: this.#now() });
  }

  delete(key: K): boolean {
    return this.#leases.delete(key);
  }

  /** True when the lease may have run out (JetStream may have redelivered the message). */
  expired(key: K): boolean {
    const lease = this.#leases.get(key);
    return lease !== undefined && this.#now() >= lease.confirmedAt + this.#ackWaitMs - this.#marginMs;
  }

  /**
   * The messages whose lease is older than half of ack_wait and still runs: send them
   * `working()`, then call `confirm()` with the returned batch once a flush came back.
   */
  due(): { keys: K[]; sentAt: number } {
    const now = this.#now();
    const keys: K[] = [];
    for (const [key, lease] of this.#leases) {
      if (now - lease.confirmedAt >= this.#ackWaitMs / 2 && !this.expired(key)) keys.push(key);
    }
    return { keys, sentAt: now };
  }

  /** A flush after the `working()`s of `batch` came back now: their leases restarted at `sentAt`. */
  confirm(batch: { keys: readonly K[]; sentAt: number }): void {
    for (const key of batch.keys) {
      const lease = this.#leases.get(key);
      if (lease && !this.expired(key)) lease.confirmedAt = Math.max(lease.confirmedAt, batch.sentAt);
    }
  }
}
