/**
 * The part of @confluentinc/kafka-javascript's native API (its `RdKafka` export, not the
 * KafkaJS-compatible layer) this driver uses, declared here so Ferry type-checks and builds
 * without the optional package, and `load()`, which requires it only when `kafka.driver` is
 * `librdkafka`: a gateway without the package (or with an unbuilt one) still runs with kafkajs,
 * and choosing librdkafka then fails at start with a ConfigError that says how to install it.
 */
import { createRequire } from 'node:module';
import { ConfigError } from '../../../../shared/errors.js';

export type NativeConfig = Record<string, string | number | boolean>;

/** What the library hands to callbacks: a LibrdKafkaError (`code` is librdkafka's error code). */
export interface NativeError extends Error {
  code: number;
  origin?: string;
  isFatal?: boolean;
  isRetriable?: boolean;
  isTxnRequiresAbort?: boolean;
}

export type Callback<T = void> = (err: NativeError | null | undefined, value: T) => void;

/** Promise of a callback-style native call. */
export function call<T>(fn: (cb: Callback<T>) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => fn((err, value) => (err ? reject(err) : resolve(value))));
}

/** One header: exactly one own property, name -> value. */
export type NativeHeader = Record<string, Buffer | string>;

export interface DeliveryReport {
  topic: string;
  partition: number;
  offset: number;
  /** the record value's length */
  size: number;
  /** the record's value (dr_msg_cb) */
  value?: Buffer | null;
}

export interface BindingProducer {
  connect(opts: Record<string, unknown>, cb: Callback<unknown>): void;
  disconnect(timeoutMs: number, cb: Callback<unknown>): void;
  produce(topic: string, partition: number | null, value: Buffer | null, key: Buffer | null | undefined, timestampMs: number, opaque: undefined, headers: NativeHeader[] | undefined): unknown;
  flush(timeoutMs: number, cb: Callback): void;
  setPollInterval(ms: number): void;
  initTransactions(timeoutMs: number, cb: Callback): void;
  beginTransaction(cb: Callback): void;
  commitTransaction(timeoutMs: number, cb: Callback): void;
  abortTransaction(timeoutMs: number, cb: Callback): void;
  on(event: 'delivery-report', fn: (err: NativeError | null | undefined, report: DeliveryReport) => void): void;
  on(event: 'event.error', fn: (err: NativeError) => void): void;
  on(event: 'event.log', fn: (log: { severity: number; fac: string; message: string }) => void): void;
}

export interface NativeMessage {
  topic: string;
  partition: number;
  offset: number;
  key?: Buffer | null;
}

export interface NativeConsumer {
  connect(opts: Record<string, unknown>, cb: Callback<unknown>): void;
  disconnect(cb: Callback<unknown>): void;
  assign(assignments: Array<{ topic: string; partition: number; offset: number }>): void;
  consume(count: number, cb: Callback<NativeMessage[]>): void;
  position(): Array<{ topic: string; partition: number; offset?: number }>;
  setDefaultConsumeTimeout(ms: number): void;
  isConnected(): boolean;
  on(event: 'event.error', fn: (err: NativeError) => void): void;
  on(event: 'event.log', fn: (log: { severity: number; fac: string; message: string }) => void): void;
}

export interface TopicDescription {
  name: string;
  partitions: unknown[];
  error?: NativeError;
}

export interface ListedOffset {
  topic: string;
  partition: number;
  offset: number;
  error?: NativeError;
}

export interface NativeAdmin {
  listTopics(options: { timeout: number }, cb: Callback<string[]>): void;
  describeTopics(topics: string[], options: { timeout: number }, cb: Callback<TopicDescription[]>): void;
  createTopic(topic: { topic: string; num_partitions: number; replication_factor: number; config: Record<string, string> }, timeoutMs: number, cb: Callback): void;
  listOffsets(partitions: Array<{ topic: string; partition: number; offset: unknown }>, options: { timeout: number; isolationLevel: number }, cb: Callback<ListedOffset[]>): void;
  disconnect(): void;
}

export interface RdKafka {
  Producer: new (conf: NativeConfig) => BindingProducer;
  KafkaConsumer: new (conf: NativeConfig, topicConf: NativeConfig) => NativeConsumer;
  AdminClient: { create(conf: NativeConfig): NativeAdmin };
  CODES: { ERRORS: Record<string, number> };
  OffsetSpec: { EARLIEST: unknown; LATEST: unknown };
  IsolationLevel: { READ_COMMITTED: number };
  librdkafkaVersion: string;
  features: string[];
}

export const PACKAGE = '@confluentinc/kafka-javascript';
export const INSTALL_HINT =
  `it is built from source at install: bash deploy/local/install-native-deps.sh (build-essential, python3 and the -dev packages of ` +
  `zlib, OpenSSL, zstd, lz4, Cyrus SASL, curl), then CKJS_LINKING=dynamic npm ci in ferry's folder; or set kafka.driver: kafkajs`;

let cached: RdKafka | undefined;

/**
 * The native library, required on first use; a ConfigError naming kafka.driver when it cannot be
 * loaded (not installed, or installed without its native build). `name`: for tests.
 */
export function load(name = PACKAGE): RdKafka {
  if (cached !== undefined && name === PACKAGE) return cached;
  let lib: RdKafka;
  try {
    lib = createRequire(import.meta.url)(name) as RdKafka;
  } catch (err) {
    const why = err instanceof Error ? err.message.split('\n')[0]! : String(err);
    throw new ConfigError([{ path: 'kafka.driver', message: `librdkafka needs the optional package ${name}, which cannot be loaded (${why}): ${INSTALL_HINT}` }], undefined, { cause: err });
  }
  if (name === PACKAGE) cached = lib;
  return lib;
}
