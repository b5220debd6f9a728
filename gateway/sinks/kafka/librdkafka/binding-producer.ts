/**
 * The librdkafka producer over the binding's own `Producer.produce()` (driver.ts
 * `DriverProducer`): the fallback when Ferry's batch addon (native-producer.ts,
 * ferry-rdkafka-batch) is not built; the addon hands a whole chunk to C per call, at about a
 * third of the CPU per record with the five ferry headers.
 *
 * Sending. librdkafka has its own accumulator: `send()` hands it the records of every request
 * (in order, yielding to the event loop between requests so a flush of 8 MB does not block it
 * for half a second, and calling `check()` before each), then `flush()`es and resolves once
 * every record was acknowledged (acks=all) or failed. Order per partition is kept by the
 * idempotent producer. A request holding one record larger than kafka.maxBatchBytes is flushed
 * alone (flush before and after it), so that librdkafka never puts other records into the batch
 * Kafka refuses as too large: they would fail with it.
 *
 * Failures without a delivery report per record. Delivery reports come to JavaScript only for
 * failed records (`delivery.report.only.error`): a report per record costs ~6 µs on the JS
 * thread, more than everything else but the headers. A failed record's report carries its value
 * (`dr_msg_cb`: copied for failed records only); it is mapped to the FIRST request holding a
 * record of its topic, partition (when known) and value bytes: never later than the request it
 * really was in (equal lines may match earlier), so every request before `failedAt` was
 * acknowledged in full, and an outage retries only what librdkafka had not delivered.
 * A flush that times out leaves the records' fate unknown: `failedAt` is 0.
 * Reports reach JavaScript after the flush callback (the binding dispatches them on the next
 * event-loop turns): the producer waits two turns after each flush before reading them.
 *
 * Transactions: begin/commit/abort with kafka.requestTimeoutMs. A commit after a failed record
 * would only say ERR__INCONSISTENT ("see individual delivery reports"); the core never commits
 * after a failed send. A producer that saw a failure is not reusable (librdkafka then fails the
 * next transaction with OUT_OF_ORDER_SEQUENCE_NUMBER): the core closes it and makes a new one.
 */
import { createHash } from 'node:crypto';
import type { Logger } from '../../../../shared/log.js';
import { KafkaError, errorMessage } from '../../../../shared/errors.js';
import type { DriverProducer, KafkaSinkConfig, SendFailure } from '../driver.js';
import type { ChunkRecords, ProduceRequest } from '../records.js';
import { toKafkaError, type CodeNames } from './errors.js';
import { nativeRecords, needsPick } from './messages.js';
import { call, type NativeError, type BindingProducer } from './native.js';

/** Picks the partition of a ChunkRecords' unkeyed records (driver.ts keeps the counts). */
export interface PartitionPicker {
  pick(topic: string): Promise<number>;
  /** a picked partition was refused: look the topic's partition count up again */
  refused(topic: string): void;
}

interface Failed {
  error: NativeError;
  topic: string;
  partition: number;
  size: number;
  /** the record's value, copied by the binding (dr_msg_cb) for failed records only */
  value: Buffer | undefined;
}

/** Lookup key of a failed record: topic, size and a digest of the value (undefined: size only). */
function failedKey(topic: string, size: number, value: Buffer | undefined): string {
  return `${topic}\0${size}\0${value === undefined ? '' : createHash('md5').update(value).digest('base64')}`;
}

/** What this producer adds to the driver's producer properties: reports of failed records only, with their value. */
export const BINDING_REPORTS = { dr_msg_cb: true, 'delivery.report.only.error': true } as const;


/** librdkafka's ERR__PURGE_QUEUE, ERR__PURGE_INFLIGHT */
const PURGED = new Set([-152, -151]);

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class BindingFallbackProducer implements DriverProducer {
  private failed: Failed[] = [];
  private open = false;
  /** the first fatal error a call returned (isFatal), if any: ERR__FATAL later stands for it */
  private fatal: NativeError | undefined;
  /** partition picked per ChunkRecords (its unkeyed records all go there) */
  private readonly picks = new WeakMap<ChunkRecords, number>();

  constructor(
    private readonly native: BindingProducer,
    private readonly names: CodeNames,
    private readonly config: KafkaSinkConfig,
    private readonly partitions: PartitionPicker,
    private readonly log: Logger,
  ) {
    native.on('delivery-report', (err, report) => {
      if (err) this.failed.push({ error: err, topic: report.topic, partition: report.partition, size: report.size, value: report.value ?? undefined });
    });
  }

  get inTransaction(): boolean {
    return this.open;
  }

  private error(err: unknown, what: string): KafkaError {
    if ((err as Partial<NativeError> | null)?.isFatal === true && this.fatal === undefined) this.fatal = err as NativeError;
    return toKafkaError(err, what, { names: this.names, fatal: this.fatal });
  }

  async send(requests: readonly ProduceRequest[], check: () => void): Promise<SendFailure | undefined> {
    this.failed = [];
    this.flushError = undefined;
    for (const [k, req] of requests.entries()) {
      try {
        check();
      } catch (error) {
        return this.finish(requests, { failedAt: k, error });
      }
      const alone = req.records === 1 && req.bytes > this.config.maxBatchBytes;
      if (alone && !(await this.flush())) return this.settle(requests, undefined);
      try {
        await this.produce(req);
      } catch (err) {
        return this.finish(requests, { failedAt: k, error: this.error(err, 'librdkafka refused a record') });
      }
      if (alone && !(await this.flush())) return this.settle(requests, undefined);
      await turn();
    }
    return this.finish(requests, undefined);
  }

  /** Flushes what was handed over, then settles (so requests before a local failure are known acknowledged). */
  private async finish(requests: readonly ProduceRequest[], local: SendFailure | undefined): Promise<SendFailure | undefined> {
    await this.flush();
    return this.settle(requests, local);
  }

  /**
   * Records purged by librdkafka itself mean a fatal error of the transactional producer
   * (fenced, epoch bumped by the coordinator); the error events carry no code, but an abort then
   * fails with the fatal error (ERR__FENCED -> PRODUCER_FENCED): its error replaces the purge's.
   */
  private async fatalReason(failure: SendFailure): Promise<SendFailure> {
    if (!this.open || !this.failed.some((f) => PURGED.has(f.error.code))) return failure;
    try {
      await call((cb) => this.native.abortTransaction(this.config.requestTimeoutMs, cb));
      this.open = false;
      return failure;
    } catch (err) {
      if ((err as Partial<NativeError>).isFatal === true) this.fatal = err as NativeError;
      return { failedAt: failure.failedAt, error: this.error(err, 'the Kafka producer failed fatally') };
    }
  }

  /** set by flush() when it timed out: the fate of the records handed over is unknown */
  /** set by flush() when it timed out: the fate of the records handed over is unknown */
  private flushError: KafkaError | undefined;

  /** Waits until every record handed over was acknowledged or failed; false when that timed out. */
  private async flush(): Promise<boolean> {
    try {
      await call((cb) => this.native.flush(this.config.requestTimeoutMs + 5000, cb));
      // the failed records' reports follow the flush callback (see the top of this file)
      await turn();
      await turn();
      return true;
    } catch (err) {
      this.flushError = this.error(err, `records not acknowledged by Kafka within ${this.config.requestTimeoutMs + 5000} ms`);
      return false;
    }
  }

  private async produce(req: ProduceRequest): Promise<void> {
    for (const seg of req.segments) {
      const set = seg.records;
      const records = nativeRecords(set);
      let pick = -1;
      if (needsPick(set)) {
        const known = this.picks.get(set);
        pick = known ?? (await this.partitions.pick(set.topic));
        if (known === undefined) this.picks.set(set, pick);
      }
      for (let i = seg.from; i < seg.to; i++) {
        const r = records[i]!;
        const partition = r.picked ? pick : r.partition;
        try {
          this.native.produce(set.topic, partition, r.value, r.key, set.timestampMs, undefined, r.headers);
        } catch (err) {
          if (r.picked) {
            this.partitions.refused(set.topic);
            this.picks.delete(set);
          }
          throw err;
        }
      }
    }
  }

  /** The failure of this send, from a local one (at its request) and the failed records' reports. */
  private async settle(requests: readonly ProduceRequest[], local: SendFailure | undefined): Promise<SendFailure | undefined> {
    let failure = local;
    if (this.failed.length > 0) {
      const { at, failed } = this.firstFailed(requests);
      if (failure === undefined || at < failure.failedAt) failure = { failedAt: at, error: this.error(failed.error, `Kafka did not take a record for topic "${failed.topic}"`) };
    }
    // A flush that timed out: no request is known acknowledged.
    if (this.flushError !== undefined) failure = { failedAt: 0, error: failure?.error ?? this.flushError };
    this.flushError = undefined;
    if (failure !== undefined && this.failed.length > 0) {
      failure = await this.fatalReason(failure);
      this.log.debug({ failedRecords: this.failed.length, failedAt: failure.failedAt, err: errorMessage(failure.error) }, 'librdkafka: records failed');
    }
    this.failed = [];
    return failure;
  }

  /**
   * The first request holding a failed record, and that record's report (see the top of this
   * file): a record matches a report with its topic, value bytes (digest) and partition (when
   * known on both sides); the scan stops at the first match. None matching: request 0.
   */
  private firstFailed(requests: readonly ProduceRequest[]): { at: number; failed: Failed } {
    const byValue = new Map<string, Failed[]>();
    const sizes = new Set<string>();
    for (const f of this.failed) {
      sizes.add(`${f.topic}\0${f.size}`);
      const key = failedKey(f.topic, f.size, f.value);
      const list = byValue.get(key);
      if (list === undefined) byValue.set(key, [f]);
      else list.push(f);
    }
    for (const [k, req] of requests.entries()) {
      for (const seg of req.segments) {
        const set = seg.records;
        const records = nativeRecords(set);
        const pick = this.picks.get(set);
        for (let i = seg.from; i < seg.to; i++) {
          const r = records[i]!;
          if (!sizes.has(`${set.topic}\0${r.value.length}`)) continue;
          const partition = r.picked ? pick : r.partition;
          const candidates = [...(byValue.get(failedKey(set.topic, r.value.length, r.value)) ?? []), ...(byValue.get(failedKey(set.topic, r.value.length, undefined)) ?? [])];
          const f = candidates.find((c) => c.partition < 0 || partition === null || partition === undefined || partition === c.partition);
          if (f !== undefined) return { at: k, failed: f };
        }
      }
    }
    return { at: 0, failed: this.failed[0]! };
  }

  async beginTransaction(): Promise<void> {
    if (this.open) throw new KafkaError('a transaction is already open', false);
    try {
      await call((cb) => this.native.beginTransaction(cb));
    } catch (err) {
      throw this.error(err, 'cannot begin a Kafka transaction');
    }
    this.open = true;
  }

  async commitTransaction(): Promise<void> {
    if (!this.open) throw new KafkaError('no transaction is open', false);
    try {
      await call((cb) => this.native.commitTransaction(this.config.requestTimeoutMs, cb));
    } catch (err) {
      throw this.error(err, 'the Kafka transaction did not commit');
    }
    this.open = false;
  }

  async abortTransaction(): Promise<boolean> {
    if (!this.open) return true;
    try {
      await call((cb) => this.native.abortTransaction(this.config.requestTimeoutMs, cb));
      this.open = false;
      return true;
    } catch (err) {
      this.log.debug({ err: errorMessage(err) }, 'librdkafka: abort failed');
      return false;
    }
  }

  async close(): Promise<void> {
    // disconnect() flushes first: records of an open transaction then reach Kafka unseen
    // (never committed), which ends with the transaction's abort by the next producer.
    await Promise.race([call((cb) => this.native.disconnect(2000, cb)).catch(() => undefined), new Promise((r) => setTimeout(r, 5000))]);
    this.open = false;
  }
}
