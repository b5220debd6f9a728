/**
 * The librdkafka driver's producer (driver.ts `DriverProducer`) on ferry-rdkafka-batch
 * (native/rdkafka-batch): a file chunk's records cross into C in ONE call (the chunk's buffer,
 * the records' (start, length) spans and offsets, the headers the chunk shares), instead of one
 * binding call with five header objects per record, which costs ~3x more CPU per record.
 * Delivery reports are counted in C per produce request (a batch id), so no JavaScript runs per
 * record either; `send()` polls them until every record of every request is settled.
 *
 * Order and failures: all requests of a `send()` are handed to librdkafka at once (it batches
 * per partition itself); the idempotent producer keeps order per partition and retries inside
 * `message.timeout.ms`. The first request with a failed record is the failure's `failedAt`, with
 * the first failed record's error. At-least-once: requests after a failed one may still be
 * delivered (they are answered retry by the core and produced again: duplicates, as
 * at-least-once allows).
 */
import { createRequire } from 'node:module';
import type { Logger } from '../../../../shared/log.js';
import { KafkaError } from '../../../../shared/errors.js';
import { flagsHeader, type ChunkRecords, type ProduceRequest } from '../records.js';
import type { DriverProducer, SendFailure } from '../driver.js';
import { clientLogger } from '../client-log.js';

/** The addon's API (native/rdkafka-batch/src/batch.c). */
export interface BatchAddon {
  create(config: Array<[string, string]>): unknown;
  produceChunk(
    h: unknown,
    batch: number,
    topic: string,
    partition: number,
    key: Buffer | null,
    timestampMs: number,
    data: Buffer,
    spans: Int32Array,
    offsets: Float64Array | null,
    lead: ReadonlyArray<readonly [string, Buffer]>,
    tail: ReadonlyArray<readonly [string, Buffer]>,
    flags: Array<Buffer | null> | null,
  ): number;
  produceRecord(h: unknown, batch: number, topic: string, partition: number, key: Buffer | null, value: Buffer, timestampMs: number, headers: Array<[string, Buffer]>): number;
  poll(h: unknown): void;
  batchState(h: unknown, batch: number): [delivered: number, failed: number, firstError: number];
  outq(h: unknown): number;
  logs(h: unknown): Array<[level: number, facility: string, message: string]>;
  errorName(code: number): string;
  fatalError(h: unknown): [code: number, name: string, message: string] | null;
  initTransactions(h: unknown, timeoutMs: number): Promise<void>;
  beginTransaction(h: unknown): Promise<void>;
  commitTransaction(h: unknown, timeoutMs: number): Promise<void>;
  abortTransaction(h: unknown, timeoutMs: number): Promise<void>;
  flush(h: unknown, timeoutMs: number): Promise<void>;
  destroy(h: unknown, timeoutMs: number): Promise<void>;
}

/** An error the addon threw or rejected with. */
export interface AddonError extends Error {
  code: number;
  name: string;
  fatal: boolean;
  retriable: boolean;
  abortable: boolean;
}

/** librdkafka's RD_KAFKA_RESP_ERR__QUEUE_FULL */
const QUEUE_FULL = -184;
/** librdkafka's _PURGE_QUEUE and _PURGE_INFLIGHT: a record purged because its transaction failed */
const PURGED = new Set([-152, -151]);
/** How long the other records of a send may take to settle once one failed. */
const SETTLE_AFTER_FAILURE_MS = 2000;
/** librdkafka's RD_KAFKA_PARTITION_UA: let the partitioner choose */
export const PARTITION_UA = -1;

export function loadBatchAddon(): BatchAddon {
  return createRequire(import.meta.url)('ferry-rdkafka-batch') as BatchAddon;
}

export interface NativeProducerOptions {
  addon: BatchAddon;
  /** every librdkafka property of the producer, already decided by the driver */
  properties: Record<string, string>;
  transactional: boolean;
  /**
   * The partition of the records of `set` that name none and have no key (one per ChunkRecords,
   * so they stay together); keyed records go where librdkafka's partitioner puts them.
   */
  partitionOf: (set: ChunkRecords) => number | Promise<number>;
  /** turns a librdkafka error (code and name) into the error the core classifies */
  toError: (code: number, name: string, message: string, cause?: unknown) => KafkaError;
  log: (level: number, facility: string, message: string) => void;
  timeoutMs: number;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class NativeProducer implements DriverProducer {
  private readonly b: BatchAddon;
  private readonly h: unknown;
  private nextBatch = 1;
  private txnOpen = false;
  private closed = false;
  private readonly logTimer: NodeJS.Timeout;
  /** the partition picked for a ChunkRecords' unkeyed records (a chunk spans several requests) */
  private readonly picked = new WeakMap<ChunkRecords, number>();

  private constructor(private readonly opts: NativeProducerOptions) {
    this.b = opts.addon;
    this.h = this.b.create(Object.entries(opts.properties));
    this.logTimer = setInterval(() => this.drainLogs(), 1000);
    this.logTimer.unref();
  }

  /** A connected producer; a transactional one is initialised (fences the older producer of its id). */
  static async open(opts: NativeProducerOptions): Promise<NativeProducer> {
    const p = new NativeProducer(opts);
    if (opts.transactional) {
      try {
        await p.b.initTransactions(p.h, opts.timeoutMs);
      } catch (err) {
        await p.close();
        throw p.wrap(err);
      }
    }
    return p;
  }

  get inTransaction(): boolean {
    return this.txnOpen;
  }

  private drainLogs(): void {
    if (this.closed) return;
    for (const [level, facility, message] of this.b.logs(this.h)) this.opts.log(level, facility, message);
  }

  private wrap(err: unknown): KafkaError {
    if (err instanceof KafkaError) return err;
    const e = err as Partial<AddonError>;
    if (typeof e.code === 'number') return this.error(e.code, e.message ?? String(err), err);
    return new KafkaError(`librdkafka: ${String((err as Error)?.message ?? err)}`, true, { cause: err });
  }

  /**
   * The error for librdkafka's `code`. A producer that met a fatal error (fenced, ...) fails
   * everything with ERR__FATAL or purges its queue: the fatal error is then the cause given.
   */
  private error(code: number, message: string, cause?: unknown): KafkaError {
    const fatal = this.closed ? null : this.b.fatalError(this.h);
    if (fatal !== null) return this.opts.toError(fatal[0], fatal[1], `${message} (fatal: ${fatal[2]})`, cause);
    return this.opts.toError(code, this.b.errorName(code), message, cause);
  }

  /** Hands one request's records to librdkafka; resolves with how many records it holds. */
  private async enqueue(batch: number, req: ProduceRequest): Promise<number> {
    let count = 0;
    for (const seg of req.segments) {
      const set = seg.records;
      if (set.file !== undefined) {
        const partition = set.file.key !== undefined ? PARTITION_UA : await this.pick(set);
        count += await this.enqueueFile(batch, set, partition, seg.from, seg.to);
      } else {
        const unkeyed = set.given!.some((r) => r.key === null && r.partition === undefined);
        count += await this.enqueueGiven(batch, set, unkeyed ? await this.pick(set) : PARTITION_UA, seg.from, seg.to);
      }
    }
    return count;
  }

  private async pick(set: ChunkRecords): Promise<number> {
    let p = this.picked.get(set);
    if (p === undefined) {
      p = await this.opts.partitionOf(set);
      this.picked.set(set, p);
    }
    return p;
  }

  private async enqueueFile(batch: number, set: ChunkRecords, partition: number, from: number, to: number): Promise<number> {
    const f = set.file!;
    const n = to - from;
    // The chunk's columns as they are: spans into the chunk buffer, offsets (no copy).
    const { data, spans: all, offsets: allOffsets, flags: allFlags, flagged } = f.chunk.columns;
    const spans = all.subarray(2 * from, 2 * to);
    const offsets = f.offset ? allOffsets.subarray(from, to) : null;
    let flags: Array<Buffer | null> | null = null;
    if (flagged) {
      for (let i = 0; i < n; i++) {
        const fl = allFlags[from + i]!;
        if (fl === 0) continue;
        flags ??= new Array<Buffer | null>(n).fill(null);
        flags[i] = Buffer.from(flagsHeader(fl), 'latin1');
      }
    }
    let done = 0;
    while (done < n) {
      const rest = done === 0 ? spans : spans.subarray(2 * done);
      done += this.b.produceChunk(this.h, batch, set.topic, partition, f.key ?? null, set.timestampMs, data, rest, offsets && done > 0 ? offsets.subarray(done) : offsets, f.lead, f.tail, flags && done > 0 ? flags.slice(done) : flags);
      if (done < n) await this.queueRoom();
    }
    return n;
  }

  private async enqueueGiven(batch: number, set: ChunkRecords, partition: number, from: number, to: number): Promise<number> {
    const records = set.given!;
    for (let i = from; i < to; i++) {
      const r = records[i]!;
      const headers = r.headers === undefined ? [] : Object.entries(r.headers);
      for (;;) {
        const code = this.b.produceRecord(this.h, batch, set.topic, r.partition ?? (r.key !== null ? PARTITION_UA : partition), r.key, r.value, set.timestampMs, headers);
        if (code === 0) break;
        if (code !== QUEUE_FULL) throw this.error(code, `librdkafka refused record ${i} for topic "${set.topic}": ${this.b.errorName(code)}`);
        await this.queueRoom();
      }
    }
    return to - from;
  }

  /** librdkafka's queue is full (queue.buffering.max.*): serve reports and wait a little. */
  private async queueRoom(): Promise<void> {
    this.b.poll(this.h);
    await sleep(2);
  }

  async send(requests: readonly ProduceRequest[], check: () => void): Promise<SendFailure | undefined> {
    const batches: Array<{ id: number; count: number }> = [];
    for (const [k, req] of requests.entries()) {
      try {
        check();
      } catch (error) {
        return (await this.settle(batches)) ?? { failedAt: k, error };
      }
      try {
        const id = this.nextBatch;
        this.nextBatch = (this.nextBatch % 0x7fffffff) + 1;
        batches.push({ id, count: await this.enqueue(id, req) });
      } catch (error) {
        // Earlier requests are on their way: settle them first, so a failure among them counts.
        const earlier = await this.settle(batches);
        return earlier ?? { failedAt: k, error: this.wrap(error) };
      }
    }
    return this.settle(batches);
  }

  /**
   * Waits until every record of `batches` is delivered or failed. On a failure, the others get
   * up to SETTLE_AFTER_FAILURE_MS to settle too (a failed transaction's other records are purged
   * by librdkafka, and the purge may be reported before the real error), so that the request
   * whose records Kafka refused is named (`causeAt`), not one that was only purged.
   */
  private async settle(batches: ReadonlyArray<{ id: number; count: number }>): Promise<SendFailure | undefined> {
    const since = performance.now();
    let failedSince: number | undefined;
    for (;;) {
      this.b.poll(this.h);
      let pending = false;
      let failedAt = -1;
      for (const [k, { id, count }] of batches.entries()) {
        const [delivered, failed] = this.b.batchState(this.h, id);
        if (failed > 0 && failedAt < 0) failedAt = k;
        if (delivered + failed < count) pending = true;
      }
      if (failedAt >= 0) failedSince ??= Date.now();
      if (!pending || (failedSince !== undefined && Date.now() - failedSince >= SETTLE_AFTER_FAILURE_MS)) {
        this.drainLogs();
        return failedAt < 0 ? undefined : this.failure(batches, failedAt);
      }
      // Polled, not called back: every 1 ms while the requests are young (a small flush, the
      // normal case at a steady rate, is answered in a few ms), then at a tenth of the time
      // spent so far, at most every 10 ms (a large flush takes seconds).
      await sleep(Math.min(10, Math.max(1, Math.floor((performance.now() - since) / 10))));
    }
  }

  private failure(batches: ReadonlyArray<{ id: number; count: number }>, failedAt: number): SendFailure {
    let causeAt = failedAt;
    for (let k = failedAt; k < batches.length; k++) {
      const [, failed, code] = this.b.batchState(this.h, batches[k]!.id);
      if (failed > 0 && !PURGED.has(code)) {
        causeAt = k;
        break;
      }
    }
    const { id, count } = batches[causeAt]!;
    const [, failed, code] = this.b.batchState(this.h, id);
    const error = this.error(code, `Kafka did not take ${failed} of ${count} records of a produce request: ${this.b.errorName(code)}`);
    return causeAt === failedAt ? { failedAt, error } : { failedAt, causeAt, error };
  }

  async beginTransaction(): Promise<void> {
    try {
      await this.b.beginTransaction(this.h);
    } catch (err) {
      throw this.wrap(err);
    }
    this.txnOpen = true;
  }

  async commitTransaction(): Promise<void> {
    try {
      await this.b.commitTransaction(this.h, this.opts.timeoutMs);
    } catch (err) {
      // A commit that failed in a way that needs an abort leaves the transaction open.
      const e = err as Partial<AddonError>;
      if (e.abortable !== true) this.txnOpen = false;
      throw this.wrap(err);
    }
    this.txnOpen = false;
  }

  async abortTransaction(): Promise<boolean> {
    if (!this.txnOpen) return true;
    try {
      await this.b.abortTransaction(this.h, this.opts.timeoutMs);
      this.txnOpen = false;
      return true;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.drainLogs();
    this.closed = true;
    clearInterval(this.logTimer);
    // Undelivered records are given up after 5 s: the core answers them retry and sends them again.
    await this.b.destroy(this.h, 5000).catch(() => undefined);
  }
}

/** librdkafka's syslog-style log levels (0 emerg .. 7 debug) into the gateway's logger, throttled. */
export function librdkafkaLog(log: Logger): (level: number, facility: string, message: string) => void {
  const out = clientLogger(log, 'librdkafka');
  return (level, facility, message) => out(level <= 3 ? 'error' : level === 4 ? 'warn' : 'debug', `${facility}:${message}`, message, { facility });
}
