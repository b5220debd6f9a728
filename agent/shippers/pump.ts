/**
 * The ship loop: spool -> shipper -> spool.ack.
 *
 * Invariants
 * - Chunks are handed to the shipper in seq order, at most `maxInFlight` of them inside
 *   unresolved send() calls at any time (counting sends whose results are no longer wanted).
 * - Only the contiguous prefix of the window whose results are 'ok' is acknowledged to the
 *   spool (in batches, once per tick), so the spool never holds a gap before an unshipped chunk.
 * - A failed head (first unacknowledged chunk) makes the pump go back to it: results of later
 *   chunks are discarded and everything from the head is sent again, in order, after a backoff
 *   delay (exponential with jitter, or the server's Retry-After). Receivers deduplicate by
 *   `agentId/seq`, so a chunk that had made it is not delivered twice.
 * - After any failure only the head is sent (a probe) until it succeeds, then the window opens
 *   again: a server that is down gets one request per backoff period, not `maxInFlight`.
 * - A fatal head (refused by the far side) blocks shipping: nothing behind it is sent, it stays in
 *   the spool, it is logged once at error level and shown by health/status/metrics, and it is
 *   probed again every `retry.maxMs` (an operator may fix the gateway's config meanwhile).
 * - The pump never polls: it wakes on spool appends, on send results and on its backoff timer.
 * - Chunks just appended are kept as the spool handed them (up to FRESH_MAX_BYTES): when they
 *   follow the cursor without a gap they are sent from memory, without reading them back; any
 *   other case (a gap, a resend from the head, more than fits) reads the spool.
 * - Confirmed chunks are deleted from the spool in batches, ACK_FLUSH_MS after the first
 *   confirmation (or at once when ACK_FLUSH_CHUNKS wait, and at stop): one delete transaction
 *   for what a steady rate confirms meanwhile, instead of one per chunk. A chunk confirmed but
 *   not yet deleted is behind the cursor, so it is not sent again unless the agent stops
 *   without stop() (a crash), and then the receivers deduplicate it.
 */
import type { Logger } from '../../shared/log.js';
import { Counter, Gauge, Histogram, type Registry } from '../../shared/metrics.js';
import { backoffDelay, type BackoffPolicy } from '../../shared/backoff.js';
import { errorMessage } from '../../shared/errors.js';
import { redactText } from '../../shared/redact.js';
import type { SpoolReader, SpooledChunk } from '../spool/types.js';
import { isFatal, isRetry, ShipFailure, type SendResult, type Shipper } from './types.js';

/** Bytes of just-appended chunks kept to be sent without a spool read. */
const FRESH_MAX_BYTES = 4 * 1024 * 1024;

/** How long confirmed chunks wait to be deleted from the spool together, at most. */
const ACK_FLUSH_MS = 100;
/** ...unless this many wait: deleted at once. */
const ACK_FLUSH_CHUNKS = 1024;

/** Retry-After values beyond this are treated as this (a misconfigured proxy must not park the agent for days). */
export const MAX_RETRY_AFTER_MS = 10 * 60 * 1000;

export interface PumpOptions {
  spool: SpoolReader;
  shipper: Shipper;
  /** chunks inside unresolved send() calls at most */
  maxInFlight: number;
  retry: BackoffPolicy;
  log: Logger;
  registry: Registry;
  /** chunks per send() call; default ceil(maxInFlight / 4), so several sends overlap */
  sendBatch?: number;
  /** bytes per spool read, a bound on the memory chunks in flight take; default 64 MiB */
  maxReadBytes?: number;
  /** for tests */
  random?: () => number;
  now?: () => number;
}

export interface PumpStatus {
  running: boolean;
  /** chunks inside unresolved send() calls */
  inFlight: number;
  /** highest seq handed to the shipper in the current pass */
  cursor: number;
  lastAckedSeq: number | null;
  /** ms since epoch of the last chunk the far side confirmed */
  lastShipAtMs: number | null;
  ackedChunks: number;
  /** the head chunk is being retried */
  retrying: { seq: number; attempt: number; error: string; nextAttemptAtMs: number } | null;
  /** the head chunk was refused: shipping stops behind it */
  blocked: { seq: number; path: string; topic: string; error: string; sinceMs: number } | null;
}

type EntryState = 'sending' | 'ok' | 'failed';

interface Entry {
  chunk: SpooledChunk;
  state: EntryState;
  result?: SendResult;
}

interface PumpMetrics {
  sent: Counter;
  acked: Counter;
  ackedBytes: Counter;
  ackedLines: Counter;
  retries: Counter<'reason'>;
  fatal: Counter;
  latency: Histogram;
  inFlight: Gauge;
  blocked: Gauge;
  lastShip: Gauge;
}

function createMetrics(registry: Registry): PumpMetrics {
  const registers = [registry];
  return {
    sent: new Counter({ name: 'ferry_ship_chunks_sent_total', help: 'chunks handed to the transport, resends included', registers }),
    acked: new Counter({ name: 'ferry_ship_chunks_acked_total', help: 'chunks confirmed by the far side and deleted from the spool', registers }),
    ackedBytes: new Counter({ name: 'ferry_ship_bytes_total', help: 'encoded chunk bytes confirmed by the far side', registers }),
    ackedLines: new Counter({ name: 'ferry_ship_lines_total', help: 'lines (records) confirmed by the far side', registers }),
    retries: new Counter({ name: 'ferry_ship_retries_total', help: 'failed sends of the head chunk that will be retried', labelNames: ['reason'], registers }),
    fatal: new Counter({ name: 'ferry_ship_fatal_chunks_total', help: 'chunks the far side refused (kept in the spool; shipping blocks behind them)', registers }),
    latency: new Histogram({
      name: 'ferry_ship_latency_seconds',
      help: 'time from handing a chunk to the transport to its confirmation',
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    }),
    inFlight: new Gauge({ name: 'ferry_ship_in_flight_chunks', help: 'chunks sent and awaiting confirmation', registers }),
    blocked: new Gauge({ name: 'ferry_ship_blocked', help: '1 while shipping is blocked behind a refused chunk', registers }),
    lastShip: new Gauge({ name: 'ferry_ship_last_success_timestamp_seconds', help: 'when the far side last confirmed a chunk (unix seconds)', registers }),
  };
}

export class Pump {
  private readonly spool: SpoolReader;
  private readonly shipper: Shipper;
  private readonly maxInFlight: number;
  private readonly sendBatch: number;
  private readonly maxReadBytes: number;
  private readonly retry: BackoffPolicy;
  private readonly log: Logger;
  private readonly m: PumpMetrics;
  private readonly random: () => number;
  private readonly now: () => number;

  private window: Entry[] = [];
  private outstanding = 0;
  private generation = 0;
  private cursor = 0;
  private probing = false;
  private held: NodeJS.Timeout | undefined;
  private attempt = 0;
  private lastRetryReason = '';
  private started = false;
  private stopping = false;
  private closed = false;
  private kickQueued = false;
  private unsubscribe: (() => void) | undefined;
  private pendingAcks: number[] = [];
  /** chunks as appended, in seq order without gaps (see the top of this file) */
  private fresh: SpooledChunk[] = [];
  private freshBytes = 0;
  private ackQueued: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];

  private lastAckedSeq: number | null = null;
  private lastShipAtMs: number | null = null;
  private ackedChunks = 0;
  private retrying: PumpStatus['retrying'] = null;
  private blocked: PumpStatus['blocked'] = null;

  constructor(opts: PumpOptions) {
    if (!Number.isInteger(opts.maxInFlight) || opts.maxInFlight < 1) throw new RangeError(`maxInFlight must be an integer >= 1, got ${opts.maxInFlight}`);
    this.spool = opts.spool;
    this.shipper = opts.shipper;
    this.maxInFlight = opts.maxInFlight;
    this.sendBatch = Math.max(1, Math.min(opts.maxInFlight, opts.sendBatch ?? Math.ceil(opts.maxInFlight / 4)));
    this.maxReadBytes = opts.maxReadBytes ?? 64 * 1024 * 1024;
    this.retry = opts.retry;
    this.log = opts.log.child({ component: 'pump' });
    this.m = createMetrics(opts.registry);
    this.random = opts.random ?? Math.random;
    this.now = opts.now ?? Date.now;
  }

  /** Seeds "last successful ship" from what a previous run recorded. */
  setLastShipAtMs(ms: number | null): void {
    if (ms !== null && (this.lastShipAtMs === null || ms > this.lastShipAtMs)) {
      this.lastShipAtMs = ms;
      this.m.lastShip.set(ms / 1000);
    }
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    this.unsubscribe = this.spool.onAppend((chunk) => {
      this.keepFresh(chunk);
      this.kick();
    });
    this.kick();
  }

  /**
   * Stops handing out chunks, waits until the sends under way have answered (or `deadlineMs`,
   * a point in time in ms since epoch, has passed) and acknowledges what was confirmed.
   * Returns the number of chunks still unanswered at the deadline.
   */
  async stop(deadlineMs: number): Promise<number> {
    this.stopping = true;
    this.unsubscribe?.();
    this.unsubscribe = undefined;
    if (this.held) clearTimeout(this.held);
    this.held = undefined;
    if (this.outstanding > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, Math.max(0, deadlineMs - this.now()));
        }),
      ]);
      clearTimeout(timer);
    }
    this.flushAcks();
    this.started = false;
    this.closed = true; // answers arriving later are ignored: the spool may be closed by now
    if (this.outstanding > 0) this.log.warn({ unanswered: this.outstanding }, 'stopped with chunks still in flight; they stay in the spool and are sent again at the next start');
    return this.outstanding;
  }

  status(): PumpStatus {
    return {
      running: this.started && !this.stopping,
      inFlight: this.outstanding,
      cursor: this.cursor,
      lastAckedSeq: this.lastAckedSeq,
      lastShipAtMs: this.lastShipAtMs,
      ackedChunks: this.ackedChunks,
      retrying: this.retrying ? { ...this.retrying } : null,
      blocked: this.blocked ? { ...this.blocked } : null,
    };
  }

  /** Schedules a fill on the microtask queue: many appends in one tick cost one spool read. */
  private kick(): void {
    if (this.kickQueued) return;
    this.kickQueued = true;
    queueMicrotask(() => {
      this.kickQueued = false;
      this.fill();
    });
  }

  private fill(): void {
    if (!this.started || this.stopping || this.held) return;
    if (this.window.some((e) => e.state === 'failed')) return; // the head decides what happens next
    let room = this.maxInFlight - this.outstanding;
    if (this.probing) room = this.window.length === 0 ? Math.min(room, 1) : 0;
    while (room > 0) {
      // Caught up: no spool read (a fill runs at every append and every answer).
      if (this.spool.newestSeq() <= this.cursor) return;
      const want = Math.min(room, this.sendBatch);
      let chunks: SpooledChunk[];
      try {
        chunks = this.takeFresh(want) ?? this.spool.readAfter(this.cursor, want, this.maxReadBytes);
      } catch (err) {
        this.log.error({ err }, 'cannot read chunks from the spool; trying again later');
        this.hold(this.retry.maxMs);
        return;
      }
      if (chunks.length === 0) return;
      this.dispatch(chunks);
      room -= chunks.length;
      if (chunks.length < want) return;
    }
  }

  private keepFresh(chunk: SpooledChunk): void {
    const last = this.fresh[this.fresh.length - 1];
    if ((last !== undefined && chunk.seq !== last.seq + 1) || this.freshBytes + chunk.bytes.length > FRESH_MAX_BYTES) return; // the spool has it
    this.fresh.push(chunk);
    this.freshBytes += chunk.bytes.length;
  }

  /** Up to `want` kept chunks right after the cursor, or undefined when the spool must be read. */
  private takeFresh(want: number): SpooledChunk[] | undefined {
    let skip = 0;
    while (skip < this.fresh.length && this.fresh[skip]!.seq <= this.cursor) skip++;
    if (skip > 0) this.dropFresh(skip);
    if (this.fresh[0]?.seq !== this.cursor + 1) {
      this.dropFresh(this.fresh.length); // not contiguous with the cursor: read the spool
      return undefined;
    }
    let n = 0;
    let bytes = 0;
    while (n < this.fresh.length && n < want && (n === 0 || bytes + this.fresh[n]!.bytes.length <= this.maxReadBytes)) bytes += this.fresh[n++]!.bytes.length;
    const out = this.fresh.slice(0, n);
    this.dropFresh(n);
    return out;
  }

  private dropFresh(n: number): void {
    for (let i = 0; i < n; i++) this.freshBytes -= this.fresh[i]!.bytes.length;
    this.fresh.splice(0, n);
  }

  private dispatch(chunks: SpooledChunk[]): void {
    const gen = this.generation;
    const entries = chunks.map((chunk): Entry => ({ chunk, state: 'sending' }));
    this.window.push(...entries);
    this.cursor = chunks[chunks.length - 1]!.seq;
    this.outstanding += chunks.length;
    this.m.inFlight.set(this.outstanding);
    this.m.sent.inc(chunks.length);
    const startedAt = this.now();
    let sent: Promise<SendResult[]>;
    try {
      sent = this.shipper.send(chunks);
    } catch (err) {
      sent = Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    sent.then(
      (results) => this.settle(gen, entries, results, startedAt),
      (err: unknown) => {
        const e = err instanceof Error ? err : new Error(String(err));
        this.settle(gen, entries, entries.map(() => ({ retry: e })), startedAt);
      },
    );
  }

  private settle(gen: number, entries: Entry[], results: readonly SendResult[], startedAt: number): void {
    if (this.closed) return;
    this.outstanding -= entries.length;
    this.m.inFlight.set(this.outstanding);
    if (this.outstanding === 0 && this.idleWaiters.length > 0) {
      for (const w of this.idleWaiters.splice(0)) w();
    }
    if (gen !== this.generation) {
      this.kick(); // a window slot is free again
      return;
    }
    const latency = (this.now() - startedAt) / 1000;
    for (let i = 0; i < entries.length; i++) {
      const entry = entries[i]!;
      const r: SendResult = results[i] ?? { retry: new Error(`the shipper answered ${results.length} results for ${entries.length} chunks`) };
      entry.result = r;
      if (r === 'ok') {
        entry.state = 'ok';
        this.m.latency.observe(latency);
      } else {
        entry.state = 'failed';
      }
    }
    this.advance();
  }

  private advance(): void {
    let acked = 0;
    while (this.window.length > 0 && this.window[0]!.state === 'ok') {
      const { chunk } = this.window.shift()!;
      this.pendingAcks.push(chunk.seq);
      this.lastAckedSeq = chunk.seq;
      this.m.ackedBytes.inc(chunk.bytes.length);
      this.m.ackedLines.inc(chunk.lineCount);
      acked++;
    }
    if (acked > 0) {
      this.ackedChunks += acked;
      this.m.acked.inc(acked);
      const now = this.now();
      this.lastShipAtMs = now;
      this.m.lastShip.set(now / 1000);
      this.recovered();
      this.scheduleAckFlush();
    }
    const head = this.window[0];
    if (head?.state === 'failed') this.headFailed(head);
    else this.kick();
  }

  /** The head went through after failures: open the window again and say so. */
  private recovered(): void {
    if (this.blocked) {
      this.log.info({ seq: this.blocked.seq, path: this.blocked.path }, 'the refused chunk was accepted; shipping resumes');
      this.blocked = null;
      this.m.blocked.set(0);
    }
    if (this.retrying || this.probing) {
      if (this.attempt > 0) this.log.info({ attempts: this.attempt }, 'shipping recovered');
      this.retrying = null;
    }
    this.probing = false;
    this.attempt = 0;
    this.lastRetryReason = '';
  }

  private headFailed(head: Entry): void {
    const r = head.result!;
    const { chunk } = head;
    // Go back to the head: later results are discarded and everything from it is sent again.
    this.generation++;
    this.window = [];
    this.cursor = chunk.seq - 1;
    this.probing = true;
    if (this.stopping) return;
    if (isFatal(r)) {
      const msg = redactText(errorMessage(r.fatal));
      if (this.blocked?.seq !== chunk.seq) {
        this.blocked = { seq: chunk.seq, path: chunk.path, topic: chunk.topic, error: msg, sinceMs: this.now() };
        this.m.fatal.inc();
        this.m.blocked.set(1);
        this.log.error(
          { seq: chunk.seq, path: chunk.path, topic: chunk.topic, lines: chunk.lineCount, err: r.fatal, recheckMs: this.retry.maxMs },
          'chunk REFUSED by the far side: it stays in the spool and shipping is blocked behind it until it is accepted (fix the gateway or its config); rechecking periodically',
        );
      } else {
        this.blocked.error = msg;
        this.log.debug({ seq: chunk.seq, err: r.fatal }, 'refused chunk still refused');
      }
      this.retrying = null;
      this.hold(this.retry.maxMs);
      return;
    }
    if (!isRetry(r)) return; // unreachable: 'ok' never reaches here
    this.attempt++;
    const reason = redactText(errorMessage(r.retry));
    const delay =
      r.retryAfterMs !== undefined && Number.isFinite(r.retryAfterMs)
        ? Math.min(Math.max(0, r.retryAfterMs), MAX_RETRY_AFTER_MS)
        : backoffDelay(this.retry, this.attempt, this.random);
    const label = r.retry instanceof ShipFailure ? r.retry.reason : 'error';
    this.m.retries.inc({ reason: label });
    this.retrying = { seq: chunk.seq, attempt: this.attempt, error: reason, nextAttemptAtMs: this.now() + delay };
    // One line per change of reason, not per attempt: an outage of hours must not flood the log.
    if (reason !== this.lastRetryReason) {
      this.lastRetryReason = reason;
      this.log.warn({ seq: chunk.seq, attempt: this.attempt, delayMs: delay, err: r.retry }, 'shipping failed; retrying with backoff');
    } else {
      this.log.debug({ seq: chunk.seq, attempt: this.attempt, delayMs: delay }, 'retrying');
    }
    this.hold(delay);
  }

  private hold(delayMs: number): void {
    if (this.held) clearTimeout(this.held);
    this.held = setTimeout(() => {
      this.held = undefined;
      this.kick();
    }, delayMs);
  }

  private scheduleAckFlush(): void {
    if (this.pendingAcks.length >= ACK_FLUSH_CHUNKS) {
      this.flushAcks();
      return;
    }
    if (this.ackQueued) return;
    this.ackQueued = setTimeout(() => {
      this.ackQueued = undefined;
      this.flushAcks();
    }, ACK_FLUSH_MS);
  }

  private flushAcks(): void {
    if (this.ackQueued) {
      clearTimeout(this.ackQueued);
      this.ackQueued = undefined;
    }
    if (this.pendingAcks.length === 0) return;
    const seqs = this.pendingAcks;
    this.pendingAcks = [];
    try {
      this.spool.ack(seqs);
    } catch (err) {
      // The chunks stay in the spool and are sent again after a restart; receivers deduplicate.
      this.log.error({ err, chunks: seqs.length, firstSeq: seqs[0] }, 'cannot delete shipped chunks from the spool');
    }
  }
}
