/**
 * The messages the pump fetched and the processor has not taken yet, bounded by count
 * (`maxMessages`, nats.fetchBatch) and by bytes (`maxBytes`, nats.maxQueuedBytes).
 *
 * A JetStream fetch is asked for a number of messages (asking for bytes instead ends a pull
 * with an error when one message is larger than the bytes asked for, and the two limits
 * exclude each other in the client), so the next fetch asks for as many messages as fit in
 * the bytes left at the size of the largest message of the last few fetches: the first fetch
 * plans with the largest message NATS allows (max_payload). What is queued stays within about
 * `maxBytes` plus one message; only a fetch planned on small chunks that brings large ones
 * instead goes beyond, once, by at most its count times max_payload.
 */

/** fetches whose largest message plans the next fetch */
const REMEMBERED_FETCHES = 8;

export interface FetchQueueLimits {
  maxMessages: number;
  maxBytes: number;
  /** the size to plan the first fetch with: the largest message the server takes */
  largestMessage: number;
}

export class FetchQueue<M extends { data: Uint8Array }> {
  private items: M[] = [];
  private queuedBytes = 0;
  /** the largest message of each of the last fetches (most recent last) */
  private readonly largest: number[] = [];
  private current = 0;

  constructor(private readonly limits: FetchQueueLimits) {}

  /** The server's max_payload, once connected: the size the first fetch plans with. */
  largestAllowed(bytes: number): void {
    this.limits.largestMessage = bytes;
  }

  get length(): number {
    return this.items.length;
  }

  get bytes(): number {
    return this.queuedBytes;
  }

  /** No room for another fetch: the pump waits until the processor takes something. */
  full(): boolean {
    return this.items.length >= this.limits.maxMessages || this.queuedBytes >= this.limits.maxBytes;
  }

  /** How many messages the next fetch asks for (at least 1 while not full). */
  nextFetch(): number {
    const room = this.limits.maxMessages - this.items.length;
    const size = Math.max(1, this.largest.length > 0 ? Math.max(...this.largest) : this.limits.largestMessage);
    const fit = Math.floor((this.limits.maxBytes - this.queuedBytes) / size);
    return Math.max(1, Math.min(room, fit));
  }

  push(m: M): void {
    this.items.push(m);
    this.queuedBytes += m.data.length;
    this.current = Math.max(this.current, m.data.length);
  }

  /** A fetch ended: its largest message plans the next ones (a fetch that brought none counts not). */
  fetchEnded(): void {
    if (this.current === 0) return;
    this.largest.push(this.current);
    if (this.largest.length > REMEMBERED_FETCHES) this.largest.shift();
    this.current = 0;
  }

  /** Takes the oldest messages: up to `maxMessages`, and beyond the first no more than `maxBytes`. */
  take(): M[] {
    let n = 0;
    let b = 0;
    while (n < this.items.length && n < this.limits.maxMessages) {
      const size = this.items[n]!.data.length;
      if (n > 0 && b + size > this.limits.maxBytes) break;
      b += size;
      n++;
    }
    this.queuedBytes -= b;
    return this.items.splice(0, n);
  }

  /** Puts messages back in front, in their order (a released agent's chunks go before anything newer). */
  putBack(ms: M[]): void {
    this.items.unshift(...ms);
    for (const m of ms) this.queuedBytes += m.data.length;
  }
}
