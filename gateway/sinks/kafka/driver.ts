/**
 * The Kafka driver interface: what the sink core (sink.ts) needs from a Kafka client library.
 * The core owns everything Ferry decides (queue and linger, packing into requests, transactions
 * per flush, the committed-chunk set, outcomes, isolation after a failure, drain, health); a
 * driver only talks to Kafka. Two drivers exist: `kafkajs/` (pure JavaScript) and `librdkafka/`
 * (@confluentinc/kafka-javascript, native). `kafka.driver` selects one (drivers.ts).
 *
 * Errors. A driver rejects with errors that carry the Kafka protocol error name as `type`
 * (`UNKNOWN_TOPIC_OR_PARTITION`, `MESSAGE_TOO_LARGE`, `PRODUCER_FENCED`, ...), on the error
 * itself or along its `cause` chain, so the core classifies both drivers' errors the same way
 * (classify.ts). An error without a known type is treated as transient (retry).
 *
 * Records. The core builds each chunk's records once, driver-independently (records.ts
 * `ChunkRecords`: values, the headers shared by the chunk, sizes) and packs them into
 * `ProduceRequest`s; a driver turns a `ChunkRecords` into its own messages, once (it may keep
 * them in `ChunkRecords.native`, which the core never reads), when it first sends it.
 */
import type { Logger } from '../../../shared/log.js';
import type { ProduceRequest } from './records.js';
import type { GatewayConfig } from '../../config.js';

export type KafkaSinkConfig = GatewayConfig['kafka'];

export interface DriverContext {
  config: KafkaSinkConfig;
  log: Logger;
}

export interface ProducerOptions {
  /** exactly-once: the transactional id; absent for the idempotent at-least-once producer */
  transactionalId?: string;
  transactionTimeoutMs: number;
}

/** What `DriverProducer.send` reports when a request was not acknowledged. */
export interface SendFailure {
  /** index (in the `requests` given) of the first request not acknowledged in full */
  failedAt: number;
  /**
   * index of the request whose records Kafka refused, when that is a later one (a driver whose
   * client fails a transaction's other records with it, e.g. librdkafka purging them); default
   * `failedAt`. `error` is that request's error.
   */
  causeAt?: number;
  error: unknown;
}

export interface DriverProducer {
  /**
   * Sends the requests, in order, inside the open transaction when there is one, and resolves
   * once Kafka acknowledged every record of every request (acks=all), or with the first failure.
   * `check()` is called before each request goes out; when it throws, nothing more is sent and
   * its error is the failure's (at `failedAt` = that request). Records of one topic partition
   * reach Kafka in the order given. A failure may leave the producer unusable: the core then
   * closes it and makes a new one.
   */
  send(requests: readonly ProduceRequest[], check: () => void): Promise<SendFailure | undefined>;
  /** exactly-once only */
  beginTransaction(): Promise<void>;
  /** exactly-once only: commits the open transaction (its records become visible together) */
  commitTransaction(): Promise<void>;
  /** exactly-once only: aborts the open transaction; false when that failed (close the producer then) */
  abortTransaction(): Promise<boolean>;
  /** true between beginTransaction() and the end of its commit or abort */
  readonly inTransaction: boolean;
  /** Disconnects. Never rejects. */
  close(): Promise<void>;
}

export interface ReaderOptions {
  topic: string;
  gatewayId: string;
  /** called with the keys of the records read, in offset order per partition */
  onKeys: (keys: ReadonlyArray<Buffer | null>) => void;
  /** called after each batch of records (and control records) has been read */
  onProgress: () => void;
}

/**
 * Reads the committed topic from its beginning with `read_committed`, and keeps following it.
 * Reconnects by itself after broker outages (a reader that cannot go on reports it through
 * `lastError`, and `positions` stop moving).
 */
export interface DriverReader {
  start(): Promise<void>;
  /** next offset to read, per partition; moves past transaction markers too */
  readonly positions: ReadonlyMap<number, number>;
  /** last error the reader met, if any (for catch-up timeout messages) */
  readonly lastError: Error | undefined;
  /** Stops reading and cleans up (consumer groups it made). Never rejects. */
  stop(): Promise<void>;
}

export interface TopicSpec {
  topic: string;
  partitions: number;
  config: Readonly<Record<string, string>>;
}

export interface KafkaDriver {
  /** the `kafka.driver` value */
  readonly name: string;
  /** Connects the admin/metadata side; rejects (retriable) when Kafka cannot be reached. */
  connect(): Promise<void>;
  listTopics(): Promise<string[]>;
  /** the topic's partition count; undefined when Kafka does not have the topic */
  partitionCount(topic: string): Promise<number | undefined>;
  createTopic(spec: TopicSpec): Promise<void>;
  /** the topic's current values of `names` (undefined: not reported) */
  topicConfig(topic: string, names: readonly string[]): Promise<Record<string, string | undefined>>;
  /**
   * End offsets of the topic's committed data, per partition: `high` is the offset a
   * read_committed reader reaches once it has read everything committed before the call (the
   * last stable offset), `low` the first offset still there.
   */
  endOffsets(topic: string): Promise<Map<number, { low: number; high: number }>>;
  /**
   * A connected producer (idempotent, acks=all, one batch in flight per partition so order
   * holds). With a transactional id it is initialised before it is returned, which fences any
   * older producer of that id and ends the transaction it left open.
   */
  createProducer(opts: ProducerOptions): Promise<DriverProducer>;
  createReader(opts: ReaderOptions): DriverReader;
  /** Disconnects what connect() opened. Never rejects. */
  close(): Promise<void>;
}
