/**
 * The Kafka sink: chunks in, one Kafka record per line out, an outcome per chunk. This is the
 * driver-independent core; a driver (driver.ts; `kafka.driver`: kafkajs/ or librdkafka/, made by
 * drivers.ts) only talks to Kafka.
 *
 * Batching. The sink has its own accumulator, whatever the driver: `send()` calls are queued,
 * and one flush loop takes what has gathered for `lingerMs` (or at once when `maxFlushBytes` are
 * waiting), up to `maxFlushBytes` of whole chunks. The default lingerMs is 0: an idle sink
 * produces at once (a line at a low rate is not held back), and what arrives while a flush is
 * under way gathers into the next one, so under load batches grow without a timer. A flush
 * builds the records (records.ts) and cuts them into produce requests of at most
 * `maxBatchBytes` / `maxBatchRecords` (kept under the broker's
 * `message.max.bytes`, so MESSAGE_TOO_LARGE does not happen for normal batches). A record larger
 * than `maxBatchBytes` goes alone in a request of its own, and Kafka decides whether it takes it
 * (the sink does not guess the limit: the topic's `max.message.bytes` may differ from the
 * broker's, applies to the compressed batch, and reading it would need DescribeConfigs rights;
 * a refused record costs one refused request). One flush is in flight at any time; the driver
 * sends its requests in order (DriverProducer.send).
 *
 * Outcomes (gateway/sinks/sink.ts):
 * - `ok` only after Kafka acknowledged every record of the chunk (acks=-1, idempotent producer),
 *   and in exactly-once mode only after the transaction holding them committed.
 * - `retry` for anything transient (broker down, timeouts, leader moves, NOT_ENOUGH_REPLICAS,
 *   unknown errors): the producer is then dropped and recreated on the next flush, because a
 *   producer can be left unusable by an error (and a transactional one must be fenced).
 *   Every chunk still queued when a flush ends with a `retry` is answered `retry` as well (not
 *   produced), so a later flush never commits a file's next chunks ahead of the failed ones: the
 *   input sends them all again, in order.
 * - `fatal` for a chunk Kafka will not take as it is, with whose fault it is:
 *   - `setting` (held and retried by the input, never dead-lettered): its topic does not exist
 *     while `allowAutoTopicCreation` is off (checked with the admin client and cached; a missing
 *     topic is looked up again after a few seconds), writes to it are refused
 *     (TOPIC_AUTHORIZATION_FAILED), or a request of several records is too large for the topic
 *     (`maxBatchBytes` above its `max.message.bytes`);
 *   - `chunk` (dead-letter / 4xx): a record alone in its request is too large
 *     (MESSAGE_TOO_LARGE), Kafka refuses its records (INVALID_TIMESTAMP: outside the topic's
 *     `message.timestamp.*.max.ms`; INVALID_RECORD), or a produce-API record names a partition
 *     the topic lacks.
 *   When a flush of several chunks fails in a way that names no chunk (topic, size, record
 *   errors), its chunks are tried again one by one at once, so only the guilty chunk is fatal.
 * A chunk spanning several produce requests is ok only if all of them succeeded: in
 * at-least-once mode a flush stops at the first failed request and every chunk that had records
 * in it or after it gets `retry` (some of its records may then reach Kafka twice, which is what
 * at-least-once allows); in exactly-once mode a flush is one transaction, all or nothing.
 *
 * Shutdown: `abortInFlight()` (sink contract) answers the queue and the flush under way `retry`
 * and makes sure that flush never commits (it sends no further request and no EndTxn(commit));
 * only a commit already sent is waited for. `stop()` calls it itself when its deadline passes.
 *
 * Delivery modes and what they guarantee:
 *
 * at-least-once: idempotent producer, no transactions. Every chunk answered ok is in Kafka. A
 * chunk delivered again (JetStream redelivery after a lost ack, an agent's resend, an HTTP retry)
 * is produced again: duplicates are possible whenever an acknowledgement is lost.
 *
 * exactly-once (default): a transactional producer (`transactionalId = <prefix>-<gateway id>`,
 * idempotent, one request in flight). A flush is one transaction holding the records of many
 * chunks plus, per chunk, a marker `agentId/seq` in `kafka.committedTopic` (committed.ts). The
 * committed topic is read at start to its end and then followed by a background reader, so this
 * gateway knows the chunks committed by itself and by every other gateway. A chunk whose id is
 * already known is answered `{ ok, duplicate: true }` without producing. Holds for
 * `read_committed` consumers:
 * - A chunk redelivered after its transaction committed, on this gateway or on another one whose
 *   reader has seen the marker, is never produced twice: for a redelivery from JetStream (lost
 *   ack, a gateway killed after the commit), an agent resend after the JetStream duplicate
 *   window, or an HTTP retry.
 * - A commit whose answer was lost (timeout, broker restart) is settled before the same chunks
 *   are tried again: the producer is recreated (initProducerId fences and finishes the old
 *   transaction) and the sink first reads the committed topic up to its new end (`catchUp`).
 * - Records of a chunk are all committed or none (one transaction), so a read_committed consumer
 *   never sees part of a chunk.
 * What does NOT hold:
 * - Two gateways handling the same chunk at the same moment (e.g. JetStream redelivers it to
 *   gateway B after `ack_wait` while gateway A is still producing it, or an agent's HTTP retry
 *   reaches B while A still works on the first try) can both commit it: neither has seen the
 *   other's marker yet. The window is one produce plus the reader's lag (well under a second
 *   with a healthy Kafka); `ack_wait` far above produce latency and `working()` keep it rare.
 *   Closing it needs a per-agent owner (shard leases), a planned capability.
 * - Two gateways with the same id share a transactional id and fence each other: give every
 *   gateway a unique `id`.
 * - Markers expire after `committedRetentionMs`: a chunk redelivered later than that is produced
 *   again.
 * - Chunk ids must never be reused: the agent's spool starts the seqs of a fresh spool at the
 *   clock in microseconds (agent/spool/spool.ts), so a wiped spool does not reuse old ids; an
 *   agent host whose clock jumped far back AND lost its spool could, and its reused ids would
 *   be dropped as duplicates.
 * - read_uncommitted consumers see the records of aborted transactions.
 * - Start-up reads every marker still retained (one per chunk): at 10 chunks/s and the default
 *   7-day `committedRetentionMs` that is ~6M records, a minute or more with kafkajs. Keep
 *   `committedRetentionMs` just above the longest time a chunk can come back (agent outage plus
 *   JetStream retention), or move to per-agent interval summaries (a compacted key per agent
 *   and gateway) when that matters.
 * After any failure the sink drops and recreates the producer (new producer id/epoch); it never
 * reuses a producer that gave up.
 *
 * Produce-API records (`SinkChunk.records`, from the HTTP `POST /topics/:topic` endpoint;
 * `acceptsRecords` is true): such a chunk is produced to `chunk.header.topic` as exactly its
 * records (keys, headers, explicit partitions; records.ts `givenRecords`), through the
 * same queue, linger, request packing, single in-flight flush, transactions, outcomes and
 * error classification as file chunks. What differs:
 * - No deduplication: its id is neither looked up in nor added to the committed set, no marker
 *   is produced for it, and two such chunks with the same id in one flush are both produced.
 *   Produce-API requests are at-least-once (a client retry produces them again), like the REST
 *   proxy. In exactly-once mode its records still go in the flush's transaction, so a
 *   read_committed consumer sees all of a request or none of it.
 * - An explicit partition is checked against the topic's partition count (admin metadata,
 *   cached; looked up again, at most every few seconds, when a partition seems out of range):
 *   a partition the topic does not have is `fatal`, naming the record and the topic's partitions.
 *
 * Telemetry: ferry_gateway_kafka_* counters (chunks by outcome, records, bytes per topic,
 * duplicates, errors by type, transactions, clamped timestamps), a produce-latency histogram,
 * one child logger. Per-topic state is bounded (bounded.ts): the topic caches are LRUs of
 * 10,000 topics, and the `topic` label names only topics Kafka has, at most 1,000 of them; the
 * rest count under `_other`.
 */
import type { Registry } from 'prom-client';
import type { Sink, SinkChunk, SinkOutcome, SinkRecord } from '../sink.js';
import type { Logger } from '../../../shared/log.js';
import { SinkMetrics } from './metrics.js';
import { chunkId } from '../../../shared/chunk/codec.js';
import { ConfigError, KafkaError, TopicForbiddenError, errorMessage } from '../../../shared/errors.js';
import {
  RequestPacker,
  fileRecords,
  givenRecords,
  estimateRecordBytes,
  maxExplicitPartition,
  partitionOutOfRange,
  recordTimestamp,
  type ChunkRecords,
  type PackLimits,
  type ProduceRequest,
} from './records.js';
import { classifyError, errorLabel } from './classify.js';
import { CommittedLog } from './committed.js';
import { CappedLabels, LruMap } from './bounded.js';
import type { DriverProducer, KafkaDriver, KafkaSinkConfig } from './driver.js';
import { createDriver } from './drivers.js';

export type { KafkaSinkConfig } from './driver.js';

/** A chunk for a topic Kafka does not have: refused (never retried as is), like a forbidden one. */
function unknownTopic(topic: string, cause?: unknown): TopicForbiddenError {
  return new TopicForbiddenError(
    topic,
    `topic "${topic}" does not exist in Kafka and kafka.allowAutoTopicCreation is false: create the topic`,
    cause === undefined ? undefined : { cause },
  );
}

export interface KafkaSinkOptions {
  gatewayId: string;
  log: Logger;
  registry: Registry;
  /** The driver to use instead of the one `kafka.driver` names (unit tests pass a fake). */
  driver?: KafkaDriver;
  /** health() says not ready once a flush has waited this long for Kafka (default 10 s) */
  stalledAfterMs?: number;
}

const MISSING_TOPIC_RECHECK_MS = 5000;
/** A flush unanswered this long makes the sink not ready (health). */
const STALLED_AFTER_MS = 10_000;
/** Topics whose existence and partition count are remembered (least recently used dropped first). */
const TOPIC_CACHE_MAX = 10_000;
/** Distinct `topic` label values of the per-topic metrics; further topics count under `_other`. */
const MAX_TOPIC_LABELS = 1000;
/** How often a topic's partition count is looked up again when a record names a partition past it. */
const PARTITIONS_RECHECK_MS = 2000;

export function createKafkaSink(config: KafkaSinkConfig, opts: KafkaSinkOptions): KafkaSink {
  return new KafkaSink(config, opts);
}

interface Pending {
  item: SinkChunk;
  id: string;
  enqueuedAt: number;
  estimate: number;
  resolve: (o: SinkOutcome) => void;
  built?: ChunkRecords;
  /** answered already (abortInFlight answers a flush's chunks before the flush ends) */
  settled?: boolean;
}

/** The flush under way: its chunks, the outcomes known so far, and whether it was aborted. */
interface Flush {
  batch: Pending[];
  outcomes: Map<Pending, SinkOutcome>;
  /** set by abortInFlight(): send no further request, never commit */
  aborted: boolean;
  /** exactly-once: the EndTxn(commit) on its way, once sent */
  committing: Promise<void> | undefined;
  done: Promise<void>;
  startedAt: number;
}

/** Thrown inside a flush that abortInFlight() cut off. */
class FlushAborted extends KafkaError {
  constructor() {
    super('the Kafka sink aborted this chunk before it was committed (the input gives it back)', true);
  }
}

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

export class KafkaSink implements Sink {
  private readonly log: Logger;
  private readonly metrics: SinkMetrics;
  private readonly exactlyOnce: boolean;
  private readonly limits: PackLimits;
  private readonly maxFlushBytes: number;
  private readonly stalledAfterMs: number;
  private driver: KafkaDriver | undefined;
  private committed: CommittedLog | undefined;
  private producer: DriverProducer | undefined;
  private state: State = 'new';
  private queue: Pending[] = [];
  private queuedBytes = 0;
  private wakeLoop: (() => void) | undefined;
  private loopDone: Promise<void> | undefined;
  private current: Flush | undefined;
  private consecutiveFailures = 0;
  private lastError: string | undefined;
  private lastClampLogMs = 0;
  /** topic -> whether it exists in Kafka and when that was looked up */
  private readonly topicState = new LruMap<string, { exists: boolean; at: number }>(TOPIC_CACHE_MAX);
  /** topic -> partition count and when it was looked up (for explicit partitions of records) */
  private readonly partitionCounts = new LruMap<string, { count: number; at: number }>(TOPIC_CACHE_MAX);
  /** the `topic` label of the per-topic metrics: topics Kafka has, at most MAX_TOPIC_LABELS */
  private readonly topicLabels = new CappedLabels(MAX_TOPIC_LABELS);
  /** The produce API's records (keys, headers, partitions) are implemented. */
  readonly acceptsRecords = true;

  constructor(
    private readonly config: KafkaSinkConfig,
    private readonly opts: KafkaSinkOptions,
  ) {
    this.log = opts.log.child({ component: 'kafka-sink' });
    this.metrics = new SinkMetrics(opts.registry);
    this.exactlyOnce = config.delivery === 'exactly-once';
    this.limits = { maxBatchBytes: config.maxBatchBytes, maxBatchRecords: config.maxBatchRecords };
    this.maxFlushBytes = Math.max(config.maxFlushBytes, config.maxBatchBytes);
    this.stalledAfterMs = opts.stalledAfterMs ?? STALLED_AFTER_MS;
  }

  async start(): Promise<void> {
    if (this.state !== 'new') throw new KafkaError(`the Kafka sink cannot start: it is ${this.state}`, false);
    this.state = 'starting';
    const c = this.config;
    try {
      this.driver = this.opts.driver ?? (await createDriver({ config: c, log: this.log }));
      await this.driver.connect();
      // Exactly-once: the producer first, because creating it fences this gateway's previous
      // producer and ends (aborts) a transaction it left open; reading the committed topic to
      // its end before that would wait for the broker's transaction timeout (LSO stuck).
      await this.ensureProducer();
      if (this.exactlyOnce) {
        this.committed = new CommittedLog({
          driver: this.driver,
          topic: c.committedTopic,
          retentionMs: c.committedRetentionMs,
          gatewayId: this.opts.gatewayId,
          log: this.log,
          timeoutMs: Math.max(c.requestTimeoutMs, 10_000),
        });
        await this.committed.start();
        this.metrics.committedIds.set(this.committed.set.size);
      }
    } catch (err) {
      await this.closeClients();
      this.state = 'stopped';
      // A setting no retry can fix (the driver's package missing, a property librdkafka refuses).
      if (err instanceof ConfigError) throw err;
      throw new KafkaError(`cannot start the Kafka sink (brokers ${c.brokers.join(', ')}): ${errorMessage(err)}`, true, { cause: err });
    }
    this.state = 'running';
    this.log.info(
      { brokers: c.brokers, driver: this.driver.name, delivery: c.delivery, transactionalId: this.transactionalId(), committedKnown: this.committed?.set.size },
      'Kafka sink started',
    );
    this.loopDone = this.loop();
  }

  private transactionalId(): string | undefined {
    return this.exactlyOnce ? `${this.config.transactionalIdPrefix}-${this.opts.gatewayId}` : undefined;
  }

  send(chunks: readonly SinkChunk[]): Promise<SinkOutcome[]> {
    if (this.state !== 'running') {
      const error = new KafkaError(`the Kafka sink is ${this.state === 'stopping' || this.state === 'stopped' ? 'shutting down' : 'not started'}`, true);
      return Promise.resolve(chunks.map(() => ({ kind: 'retry', error, retryAfterMs: 1000 })));
    }
    const now = Date.now();
    const promises = chunks.map(
      (item) =>
        new Promise<SinkOutcome>((resolve) => {
          const estimate = item.records !== undefined ? estimateRecordBytes(item.records) : item.chunk.dataBytes + item.chunk.count * 64;
          this.queue.push({ item, id: chunkId(item.chunk.header.agentId, item.chunk.header.seq), enqueuedAt: now, estimate, resolve });
          this.queuedBytes += estimate;
        }),
    );
    this.wake();
    return Promise.all(promises);
  }

  private wake(): void {
    const w = this.wakeLoop;
    this.wakeLoop = undefined;
    w?.();
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.wakeLoop = undefined;
        resolve();
      }, ms);
      this.wakeLoop = () => {
        clearTimeout(t);
        resolve();
      };
    });
  }

  private async loop(): Promise<void> {
    for (;;) {
      if (this.queue.length === 0) {
        if (this.state !== 'running') return;
        await this.sleep(60_000);
        continue;
      }
      const first = this.queue[0]!;
      const wait = first.enqueuedAt + this.config.lingerMs - Date.now();
      if (wait > 0 && this.queuedBytes < this.maxFlushBytes && this.state === 'running') {
        await this.sleep(wait);
        continue;
      }
      const batch: Pending[] = [];
      let bytes = 0;
      while (this.queue.length > 0) {
        const p = this.queue[0]!;
        if (batch.length > 0 && bytes + p.estimate > this.maxFlushBytes) break;
        this.queue.shift();
        this.queuedBytes -= p.estimate;
        bytes += p.estimate;
        batch.push(p);
      }
      const run: Flush = { batch, outcomes: new Map(), aborted: false, committing: undefined, done: Promise.resolve(), startedAt: Date.now() };
      this.current = run;
      run.done = this.flush(run);
      try {
        await run.done;
      } catch (err) {
        // flush() settles every chunk itself; this is a bug guard, never a silent loss.
        this.log.error({ err }, 'unexpected error in the Kafka sink flush');
        const error = new KafkaError(`unexpected error in the Kafka sink: ${errorMessage(err)}`, true, { cause: err });
        for (const p of batch) p.resolve({ kind: 'retry', error, retryAfterMs: 1000 });
        this.failQueued({ kind: 'retry', error, retryAfterMs: 1000 });
      } finally {
        this.current = undefined;
      }
    }
  }

  private settle(p: Pending, o: SinkOutcome): void {
    if (p.settled) return;
    p.settled = true;
    const topic = p.item.chunk.header.topic;
    const label = o.kind === 'ok' ? (o.duplicate ? 'duplicate' : 'ok') : o.kind;
    // Label by topic only for topics Kafka has (a chunk it took, or one looked up), bounded.
    const topicLabel = this.topicLabels.label(topic, o.kind === 'ok' || this.topicState.peek(topic)?.exists === true);
    this.metrics.chunks.inc({ topic: topicLabel, outcome: label });
    if (o.kind === 'ok' && !o.duplicate) {
      this.metrics.records.inc({ topic: topicLabel }, p.built?.count ?? p.item.chunk.count);
      this.metrics.bytes.inc({ topic: topicLabel }, p.built?.valueBytes ?? p.item.chunk.dataBytes);
    }
    if (o.kind === 'fatal') {
      this.log.error({ chunk: p.id, topic, source: p.item.source, err: o.error.message }, 'chunk refused by Kafka (fatal)');
    }
    p.resolve(o);
  }

  /** Answers every queued chunk with `o` (a retry), emptying the queue. Returns how many. */
  private failQueued(o: SinkOutcome): number {
    const rest = this.queue.splice(0);
    this.queuedBytes = 0;
    for (const p of rest) this.settle(p, o);
    return rest.length;
  }

  private retryOutcome(err: unknown): SinkOutcome {
    const error = err instanceof KafkaError ? err : new KafkaError(`Kafka: ${errorMessage(err)}`, true, { cause: err });
    const retryAfterMs = Math.min(30_000, 250 * 2 ** Math.min(this.consecutiveFailures, 7));
    return { kind: 'retry', error, retryAfterMs };
  }

  private async flush(run: Flush): Promise<void> {
    const { batch, outcomes } = run;
    // 1. Already committed, or twice in this flush: settle without producing. Produce-API
    // records are not deduplicated (at-least-once): they are always produced.
    const work: Pending[] = [];
    const leaders = new Map<string, Pending>();
    const followers: Array<[Pending, Pending]> = [];
    for (const p of batch) {
      if (p.item.records !== undefined) {
        work.push(p);
        continue;
      }
      const h = p.item.chunk.header;
      if (this.committed?.set.has(h.agentId, h.seq)) {
        this.metrics.duplicates.inc();
        this.log.debug({ chunk: p.id }, 'chunk already committed; not producing it again');
        this.settle(p, { kind: 'ok', duplicate: true });
        continue;
      }
      const leader = leaders.get(p.id);
      if (leader) {
        followers.push([p, leader]);
        continue;
      }
      leaders.set(p.id, p);
      work.push(p);
    }
    // 2. Chunks Kafka will not take: missing topic, a partition the topic lacks.
    let ready: Pending[] = [];
    try {
      ready = await this.precheck(work, outcomes);
    } catch (err) {
      this.noteFailure(err);
      for (const p of work) outcomes.set(p, this.retryOutcome(err));
    }
    // 3. Produce.
    if (ready.length > 0) await this.produce(ready, run, true);
    // 4. A chunk answered retry comes back later: nothing queued behind it may be produced
    // first (a file's order), so everything queued now is answered retry too, to be sent again
    // behind it, in order.
    const retry = work.map((p) => outcomes.get(p)).find((o) => o?.kind === 'retry');
    if (retry !== undefined) this.failQueued(retry);
    for (const p of work) this.settle(p, outcomes.get(p) ?? this.retryOutcome(new KafkaError('chunk was not produced', true)));
    for (const [p, leader] of followers) {
      const o = outcomes.get(leader)!;
      if (o.kind === 'ok') this.metrics.duplicates.inc();
      this.settle(p, o.kind === 'ok' ? { kind: 'ok', duplicate: true } : o);
    }
    if (this.committed) this.metrics.committedIds.set(this.committed.set.size);
  }

  private async precheck(work: Pending[], outcomes: Map<Pending, SinkOutcome>): Promise<Pending[]> {
    const ready: Pending[] = [];
    const topics = new Map<string, boolean>();
    for (const p of work) {
      const topic = p.item.chunk.header.topic;
      let exists = topics.get(topic);
      if (exists === undefined) {
        exists = await this.topicExists(topic);
        topics.set(topic, exists);
      }
      if (!exists) {
        outcomes.set(p, {
          kind: 'fatal',
          fault: 'setting',
          error: unknownTopic(topic),
        });
        continue;
      }
      const records = p.item.records;
      if (records !== undefined) {
        const refused = await this.checkPartitions(topic, records);
        if (refused !== undefined) {
          outcomes.set(p, { kind: 'fatal', fault: 'chunk', error: new KafkaError(refused, false) });
          continue;
        }
      }
      p.built ??= records !== undefined ? givenRecords(topic, records, p.item.chunk.header.readAtMs) : fileRecords(p.item.chunk, { headers: this.config.headers, key: this.config.key }, this.timestampOf(p));
      ready.push(p);
    }
    return ready;
  }

  /** The record timestamp of a file chunk: its read time, or now when that is out of bounds (counted, logged). */
  private timestampOf(p: Pending): number {
    const readAtMs = p.item.chunk.header.readAtMs;
    const now = Date.now();
    const t = recordTimestamp(readAtMs, now, this.config);
    if (t.clamped !== undefined) {
      this.metrics.clamped.inc({ direction: t.clamped });
      if (now - this.lastClampLogMs >= 10_000) {
        this.lastClampLogMs = now;
        this.log.warn({ chunk: p.id, host: p.item.chunk.header.host, readAtMs, nowMs: now, direction: t.clamped }, "chunk read time out of bounds (agent clock?); its records get the gateway's now as timestamp (logged at most every 10 s)");
      }
    }
    return t.timestampMs;
  }

  /**
   * For produce-API records: a message naming the first record whose explicit partition the
   * topic does not have, or undefined when all are fine (or none names a partition). A count
   * that seems too small is looked up again (partitions may have been added), at most every
   * PARTITIONS_RECHECK_MS per topic. Throws (-> retry) when Kafka cannot be asked.
   */
  private async checkPartitions(topic: string, records: readonly SinkRecord[]): Promise<string | undefined> {
    const max = maxExplicitPartition(records);
    const invalid = partitionOutOfRange(records, topic, Infinity);
    if (invalid !== undefined) return invalid.message;
    if (max < 0) return undefined;
    let known = this.partitionCounts.get(topic);
    if (known === undefined || (max >= known.count && Date.now() - known.at >= PARTITIONS_RECHECK_MS)) {
      const count = await this.driver!.partitionCount(topic);
      // Unknown topic with auto-creation on: the producer creates it; its partitioner refuses a
      // partition it lacks (a retry), and the next attempt finds the topic here.
      if (count === undefined) return undefined;
      known = { count, at: Date.now() };
      this.partitionCounts.set(topic, known);
    }
    return partitionOutOfRange(records, topic, known.count)?.message;
  }

  /**
   * True when the topic exists (or auto-creation is on). Cached (bounded LRU); a missing topic
   * is looked up again after MISSING_TOPIC_RECHECK_MS, an existing one when Kafka refuses it.
   */
  private async topicExists(topic: string, fresh = false): Promise<boolean> {
    if (this.config.allowAutoTopicCreation) return true;
    const known = fresh ? undefined : this.topicState.get(topic);
    if (known !== undefined && (known.exists || Date.now() - known.at < MISSING_TOPIC_RECHECK_MS)) return known.exists;
    const exists = (await this.driver!.listTopics()).includes(topic);
    this.topicState.set(topic, { exists, at: Date.now() });
    if (!exists) this.log.warn({ topic }, 'topic does not exist in Kafka');
    return exists;
  }

  private async ensureProducer(): Promise<DriverProducer> {
    if (this.producer) return this.producer;
    if (this.state === 'stopped') throw new KafkaError('the Kafka sink is stopped', true);
    const transactionalId = this.transactionalId();
    const producer = await this.driver!.createProducer({
      ...(transactionalId ? { transactionalId } : {}),
      transactionTimeoutMs: Math.max(60_000, this.config.requestTimeoutMs * 2),
    });
    try {
      // A commit whose answer was lost may have succeeded: know its markers before trying again.
      if (this.committed) await this.committed.catchUp();
    } catch (err) {
      await producer.close();
      throw err;
    }
    this.producer = producer;
    return producer;
  }

  private async dropProducer(): Promise<void> {
    const p = this.producer;
    this.producer = undefined;
    if (p) await p.close();
  }

  private noteFailure(err: unknown): void {
    this.consecutiveFailures++;
    this.lastError = errorMessage(err);
    this.metrics.errors.inc({ type: errorLabel(err) });
  }

  /**
   * Produces `items` (one transaction in exactly-once mode) and records an outcome for each.
   * `isolate`: on an error that names no chunk, try the chunks again one by one.
   */
  private async produce(items: Pending[], run: Flush, isolate: boolean): Promise<void> {
    const outcomes = run.outcomes;
    let producer: DriverProducer;
    try {
      producer = await this.ensureProducer();
    } catch (err) {
      this.noteFailure(err);
      if (this.consecutiveFailures === 1 || this.consecutiveFailures % 20 === 0) {
        this.log.warn({ err: errorMessage(err), failures: this.consecutiveFailures }, 'Kafka unavailable; chunks will be retried');
      }
      for (const p of items) outcomes.set(p, this.retryOutcome(err));
      return;
    }
    // Pack: chunk records, then (exactly-once) the chunk's marker; remember the requests each chunk spans.
    const packer = new RequestPacker(this.limits);
    const lastRequest = new Array<number>(items.length).fill(-1);
    let records = 0;
    for (const [i, p] of items.entries()) {
      const built = p.built!;
      lastRequest[i] = packer.addAll(built);
      records += built.count;
      if (this.exactlyOnce && p.item.records === undefined) lastRequest[i] = packer.addAll(this.marker(p));
    }
    const requests = packer.requests;
    if (requests.length === 0) {
      // Nothing to produce (only empty produce-API chunks): nothing Kafka has to acknowledge.
      for (const p of items) outcomes.set(p, { kind: 'ok', duplicate: false });
      return;
    }

    const started = process.hrtime.bigint();
    // abortInFlight() may cut the flush off between any two requests; from then on no request
    // is sent and, above all, no commit.
    const unlessAborted = (): void => {
      if (run.aborted) throw new FlushAborted();
    };
    let failedAt = -1;
    /** the request whose send failed (undefined: the failure was not a produce request's) */
    let failedRequest: ProduceRequest | undefined;
    let error: unknown;
    let cleanAbort = false;
    if (this.exactlyOnce) {
      let begun = false;
      try {
        unlessAborted();
        await producer.beginTransaction();
        begun = true;
        const failed = await producer.send(requests, unlessAborted);
        if (failed !== undefined) {
          failedRequest = failed.error instanceof FlushAborted ? undefined : requests[failed.causeAt ?? failed.failedAt];
          throw failed.error;
        }
        unlessAborted();
        run.committing = producer.commitTransaction();
        await run.committing;
        this.metrics.transactions.inc({ result: 'committed' });
      } catch (err) {
        failedAt = 0;
        error = err;
        if (begun) this.metrics.transactions.inc({ result: 'aborted' });
        cleanAbort = !producer.inTransaction || (await producer.abortTransaction());
      } finally {
        // (the outcomes are set below without a pause, so abortInFlight() finds them)
        run.committing = undefined;
      }
    } else {
      const failed = await producer.send(requests, unlessAborted);
      if (failed !== undefined) {
        failedAt = failed.failedAt;
        failedRequest = requests[failed.causeAt ?? failed.failedAt];
        error = failed.error;
      }
    }
    const seconds = Number(process.hrtime.bigint() - started) / 1e9;

    if (failedAt < 0) {
      this.metrics.produceSeconds.observe(seconds);
      this.metrics.flushRecords.observe(records);
      if (this.consecutiveFailures > 0) this.log.info({ failures: this.consecutiveFailures }, 'Kafka produces again');
      this.consecutiveFailures = 0;
      this.lastError = undefined;
      for (const p of items) {
        if (this.committed && p.item.records === undefined) this.committed.set.add(p.item.chunk.header.agentId, p.item.chunk.header.seq);
        outcomes.set(p, { kind: 'ok', duplicate: false });
      }
      return;
    }

    if (error instanceof FlushAborted) {
      // Not Kafka's failure: the producer stays unless its transaction could not be aborted.
      if (!cleanAbort) await this.dropProducer();
      for (const [i, p] of items.entries()) {
        outcomes.set(p, !this.exactlyOnce && lastRequest[i]! < failedAt ? { kind: 'ok', duplicate: false } : { kind: 'retry', error, retryAfterMs: 1000 });
      }
      return;
    }
    // Failed: the producer may be unusable (and a transactional one must be fenced): recreate it.
    await this.dropProducer();
    this.noteFailure(error);
    const cls = classifyError(error);
    const rest: Pending[] = [];
    for (const [i, p] of items.entries()) {
      // at-least-once: chunks wholly in requests before the failed one are in Kafka.
      if (!this.exactlyOnce && lastRequest[i]! < failedAt) outcomes.set(p, { kind: 'ok', duplicate: false });
      else rest.push(p);
    }
    if (cls === 'fenced') {
      this.log.error(
        { err: errorMessage(error), transactionalId: this.transactionalId() },
        'producer fenced: another gateway uses the same transactional id (gateway id must be unique); retrying with a new producer',
      );
    }
    if (cls === 'retry' || cls === 'fenced' || rest.length === 0) {
      if (this.consecutiveFailures === 1 || this.consecutiveFailures % 20 === 0) {
        this.log.warn({ err: errorMessage(error), type: errorLabel(error), chunks: rest.length, failures: this.consecutiveFailures }, 'produce failed; chunks will be retried');
      }
      for (const p of rest) outcomes.set(p, this.retryOutcome(error));
      return;
    }
    if (rest.length > 1 && isolate) {
      this.log.warn({ err: errorMessage(error), type: errorLabel(error), chunks: rest.length }, 'produce refused; trying the chunks one by one to find the refused one');
      for (const [i, p] of rest.entries()) {
        await this.produce([p], run, false);
        const o = outcomes.get(p);
        if (o?.kind === 'retry') {
          // Kafka went away meanwhile: the others wait too.
          for (const q of rest.slice(i + 1)) outcomes.set(q, o);
          break;
        }
      }
      return;
    }
    // One chunk (or no isolation): decide for it.
    for (const p of rest) outcomes.set(p, await this.decideRefused(p, cls, error, failedRequest));
  }

  /** The outcome of one chunk Kafka refused (`failed`: the produce request it refused). */
  private async decideRefused(p: Pending, cls: 'topic' | 'too-large' | 'refused', error: unknown, failed: ProduceRequest | undefined): Promise<SinkOutcome> {
    const topic = p.item.chunk.header.topic;
    const type = errorLabel(error);
    if (cls === 'refused') {
      const why = type === 'INVALID_TIMESTAMP' ? ': its timestamps are outside what the topic accepts (message.timestamp.before.max.ms / after.max.ms)' : '';
      return { kind: 'fatal', fault: 'chunk', error: new KafkaError(`Kafka refused chunk ${p.id} for topic "${topic}" (${type})${why}`, false, { cause: error }) };
    }
    if (cls === 'too-large') {
      const lone = failed !== undefined && failed.records === 1 ? failed.segments[0] : undefined;
      const index = lone !== undefined && lone.records === p.built ? lone.from : -1;
      if (index >= 0) {
        // A record alone in its request: no setting of ours can make Kafka take it.
        const what = p.item.records !== undefined ? `records[${index}]` : `record ${index} (file offset ${p.item.chunk.columns.offsets[index]!})`;
        return {
          kind: 'fatal',
          fault: 'chunk',
          error: new KafkaError(`${what} of chunk ${p.id} (${p.built!.sizes[index]} bytes with its headers) is too large for topic "${topic}" (${type}): over its max.message.bytes`, false, { cause: error }),
        };
      }
      return {
        kind: 'fatal',
        fault: 'setting',
        error: new KafkaError(
          `Kafka refused a produce request of several records for topic "${topic}" as too large (${type}): kafka.maxBatchBytes (${this.limits.maxBatchBytes}) is above what the topic or broker takes (max.message.bytes / message.max.bytes); lower kafka.maxBatchBytes`,
          false,
          { cause: error },
        ),
      };
    }
    if (errorLabel(error) === 'TOPIC_AUTHORIZATION_FAILED') {
      return { kind: 'fatal', fault: 'setting', error: new KafkaError(`Kafka refused writes to topic "${topic}" (TOPIC_AUTHORIZATION_FAILED)`, false, { cause: error }) };
    }
    try {
      if (!(await this.topicExists(topic, true))) {
        return { kind: 'fatal', fault: 'setting', error: unknownTopic(topic, error) };
      }
    } catch (err) {
      return this.retryOutcome(err);
    }
    // The topic exists: metadata was lagging (fresh topic, leader election). Try again later.
    return this.retryOutcome(error);
  }

  /** The chunk's committed-topic marker (committed.ts), as a record of its own. */
  private marker(p: Pending): ChunkRecords {
    const h = p.item.chunk.header;
    const value = Buffer.from(JSON.stringify({ g: this.opts.gatewayId, t: h.topic, n: h.lineCount, r: h.readAtMs }));
    return givenRecords(this.config.committedTopic, [{ key: Buffer.from(p.id), value }], Date.now());
  }

  /**
   * Sink contract: once this resolves, nothing this sink was given can still be committed. The
   * queue is answered `retry`; the flush under way is marked aborted (it sends no further
   * request, aborts its transaction and never sends EndTxn(commit)) and its chunks whose outcome
   * is not known yet are answered `retry` at once, without waiting for a request in flight: with
   * no commit to come, none of its records can become visible to read_committed. Only a commit
   * already sent is waited for, and its chunks get what it did (`ok` when it committed). The sink
   * keeps working for chunks sent afterwards. In at-least-once mode a request already sent may
   * still land in Kafka (a duplicate when the chunk comes back), as at-least-once allows.
   */
  async abortInFlight(): Promise<void> {
    const error = new FlushAborted();
    const retry: SinkOutcome = { kind: 'retry', error, retryAfterMs: 1000 };
    const queued = this.failQueued(retry);
    const run = this.current;
    if (run === undefined) return;
    run.aborted = true;
    if (run.committing !== undefined) {
      await run.done.catch(() => undefined);
    } else {
      for (const p of run.batch) this.settle(p, run.outcomes.get(p) ?? retry);
    }
    this.log.warn({ queued, inFlight: run.batch.length, waitedForCommit: run.committing !== undefined }, 'Kafka sink aborted its in-flight chunks');
  }

  async stop(deadlineMs: number): Promise<void> {
    if (this.state === 'stopped' || this.state === 'new') {
      this.state = 'stopped';
      return;
    }
    this.state = 'stopping';
    this.wake();
    const left = (): number => Math.max(0, deadlineMs - Date.now());
    // Drain: the loop flushes what is queued (without lingering) and returns when empty.
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      (this.loopDone ?? Promise.resolve()).then(() => false),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(true), left()))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      const error = new KafkaError('the Kafka sink stopped before producing this chunk', true);
      const unsent = this.failQueued({ kind: 'retry', error, retryAfterMs: 1000 });
      this.log.warn({ unsent, flushing: this.current !== undefined }, 'Kafka sink stop deadline reached');
      await Promise.race([this.abortInFlight(), new Promise((r) => setTimeout(r, 5000))]);
    }
    this.state = 'stopped';
    this.wake();
    await this.closeClients();
    this.log.info('Kafka sink stopped');
  }

  private async closeClients(): Promise<void> {
    // A flush cut off by the stop deadline: abort its transaction rather than leave it open
    // until the broker times it out (read_committed consumers would wait that long).
    const producer = this.producer;
    if (producer?.inTransaction) {
      await Promise.race([producer.abortTransaction(), new Promise((r) => setTimeout(r, 5000))]);
    }
    await this.dropProducer();
    await this.committed?.stop().catch(() => undefined);
    await this.driver?.close();
  }

  /** Exactly-once: whether this gateway knows the chunk as committed (by itself or another gateway). */
  isCommitted(agentId: string, seq: number): boolean {
    return this.committed?.set.has(agentId, seq) ?? false;
  }

  health(): { ready: boolean; detail: string } {
    if (this.state !== 'running') return { ready: false, detail: `Kafka sink ${this.state}` };
    if (this.consecutiveFailures > 0) {
      return { ready: false, detail: `Kafka failing (${this.consecutiveFailures} failed attempts): ${this.lastError ?? 'unknown error'}` };
    }
    // A client may keep waiting for Kafka up to its own timeout (librdkafka retries for
    // kafka.requestTimeoutMs before it fails a record): a flush that long unanswered says as much.
    const stalledMs = this.current === undefined ? 0 : Date.now() - this.current.startedAt;
    if (stalledMs >= this.stalledAfterMs) {
      return { ready: false, detail: `Kafka has not acknowledged the flush under way for ${Math.round(stalledMs / 1000)} s` };
    }
    return {
      ready: true,
      detail: `Kafka ok (${this.config.delivery}${this.committed ? `, ${this.committed.set.size} committed chunk ids known` : ''}, ${this.queue.length} chunks queued)`,
    };
  }
}
