/**
 * The kafkajs driver (driver.ts): pure JavaScript, no native code. kafkajs has no accumulator
 * of its own: every produce request the core packs is one `sendBatch`, sent one after the other
 * (kafkajs' idempotent producer is only safe with one request in flight).
 *
 * kafkajs warns that limited retries "may invalidate EoS guarantees" for an idempotent producer:
 * that concerns reusing a producer after it gave up; the core never does, it closes it and makes
 * a new one (new producer id/epoch) after any failure.
 */
import { readFileSync } from 'node:fs';
import { Kafka, CompressionTypes, logLevel as KafkaLogLevel } from 'kafkajs';
import type { Admin, KafkaConfig, Message, Producer, SASLOptions, Transaction, logCreator } from 'kafkajs';
import type { Logger } from '../../../../shared/log.js';
import { KafkaError } from '../../../../shared/errors.js';
import { errorTypes } from '../classify.js';
import { clientLogger } from '../client-log.js';
import type { DriverContext, DriverProducer, DriverReader, KafkaDriver, KafkaSinkConfig, ProducerOptions, ReaderOptions, SendFailure, TopicSpec } from '../driver.js';
import type { ProduceRequest } from '../records.js';
import { chunkPartitioner, kafkajsMessages } from './messages.js';
import { KafkajsReader } from './reader.js';

/** kafkajs retry settings for the producer: short first backoff (CONCURRENT_TRANSACTIONS right
 * after a commit clears in a few ms; kafkajs' default 300 ms would cap throughput), and a give-up
 * time of a few seconds so a broker outage turns into `retry` outcomes quickly. */
const PRODUCER_RETRY = { initialRetryTime: 15, maxRetryTime: 1000, retries: 10, factor: 0.2, multiplier: 2 };
const ADMIN_RETRY = { initialRetryTime: 100, maxRetryTime: 2000, retries: 5 };

function kafkaLogCreator(log: Logger): logCreator {
  const out = clientLogger(log, 'kafkajs');
  return () =>
    ({ namespace, level, log: entry }) => {
      const { message, timestamp: _t, logger: _l, ...extra } = entry as { message: string; timestamp: string; logger?: unknown; [k: string]: unknown };
      const severity = level === KafkaLogLevel.ERROR || level === KafkaLogLevel.WARN ? 'warn' : 'debug';
      out(severity, `${namespace}:${message}`, message, { namespace, ...extra });
    };
}

export function kafkaClientConfig(config: KafkaSinkConfig, log: Logger): KafkaConfig {
  const c: KafkaConfig = {
    clientId: config.clientId,
    brokers: [...config.brokers],
    requestTimeout: config.requestTimeoutMs,
    connectionTimeout: Math.min(10_000, config.requestTimeoutMs),
    logLevel: KafkaLogLevel.WARN,
    logCreator: kafkaLogCreator(log),
    retry: ADMIN_RETRY,
  };
  if (config.ssl === true) c.ssl = true;
  else if (config.ssl !== false) {
    const tls = config.ssl;
    c.ssl = {
      ...(tls.caFile ? { ca: [readFileSync(tls.caFile)] } : {}),
      ...(tls.certFile ? { cert: readFileSync(tls.certFile) } : {}),
      ...(tls.keyFile ? { key: readFileSync(tls.keyFile) } : {}),
    };
  }
  if (config.sasl) c.sasl = { mechanism: config.sasl.mechanism, username: config.sasl.username, password: config.sasl.password } as SASLOptions;
  return c;
}

export interface KafkajsDriverOptions {
  /** Makes the kafkajs client (default `new Kafka(config)`). */
  createClient?: (config: KafkaConfig) => Kafka;
}

export class KafkajsDriver implements KafkaDriver {
  readonly name = 'kafkajs';
  private readonly kafka: Kafka;
  private readonly admin: Admin;

  constructor(
    private readonly ctx: DriverContext,
    opts: KafkajsDriverOptions = {},
  ) {
    const clientConfig = kafkaClientConfig(ctx.config, ctx.log);
    this.kafka = opts.createClient ? opts.createClient(clientConfig) : new Kafka(clientConfig);
    this.admin = this.kafka.admin({ retry: ADMIN_RETRY });
  }

  connect(): Promise<void> {
    return this.admin.connect();
  }

  listTopics(): Promise<string[]> {
    return this.admin.listTopics();
  }

  async partitionCount(topic: string): Promise<number | undefined> {
    try {
      const meta = await this.admin.fetchTopicMetadata({ topics: [topic] });
      const t = meta.topics.find((x) => x.name === topic);
      return t === undefined || t.partitions.length === 0 ? undefined : t.partitions.length;
    } catch (err) {
      if (errorTypes(err).includes('UNKNOWN_TOPIC_OR_PARTITION')) return undefined;
      throw err;
    }
  }

  async createTopic(spec: TopicSpec): Promise<void> {
    await this.admin.createTopics({
      waitForLeaders: true,
      topics: [{ topic: spec.topic, numPartitions: spec.partitions, configEntries: Object.entries(spec.config).map(([name, value]) => ({ name, value })) }],
    });
  }

  async topicConfig(topic: string, names: readonly string[]): Promise<Record<string, string | undefined>> {
    const res = await this.admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2 /* TOPIC */, name: topic }] });
    const entries = res.resources[0]?.configEntries ?? [];
    return Object.fromEntries(names.map((n) => [n, entries.find((e) => e.configName === n)?.configValue]));
  }

  async endOffsets(topic: string): Promise<Map<number, { low: number; high: number }>> {
    const offsets = await this.admin.fetchTopicOffsets(topic);
    return new Map(offsets.map((p) => [p.partition, { low: Number(p.low), high: Number(p.high) }]));
  }

  async createProducer(opts: ProducerOptions): Promise<DriverProducer> {
    const c = this.ctx.config;
    const producer = this.kafka.producer({
      idempotent: true,
      maxInFlightRequests: 1,
      allowAutoTopicCreation: c.allowAutoTopicCreation,
      createPartitioner: chunkPartitioner,
      retry: PRODUCER_RETRY,
      ...(opts.transactionalId ? { transactionalId: opts.transactionalId, transactionTimeout: opts.transactionTimeoutMs } : {}),
    });
    try {
      await producer.connect();
      if (opts.transactionalId) {
        // kafkajs' connect() initialises a plain idempotent producer id; only the first
        // transaction() sends InitProducerId with the transactional id, which fences the previous
        // producer of this id and aborts the transaction it may have left open (a lost EndTxn, a
        // gateway killed mid-flush). Do it now, with an empty transaction, so that no open
        // transaction of ours holds the last stable offset while the committed topic is read.
        const fence = await producer.transaction();
        await fence.abort();
      }
    } catch (err) {
      await producer.disconnect().catch(() => undefined);
      throw err;
    }
    return new KafkajsProducer(producer, c);
  }

  createReader(opts: ReaderOptions): DriverReader {
    return new KafkajsReader(this.kafka, this.admin, this.ctx.config.clientId, this.ctx.log, opts);
  }

  async close(): Promise<void> {
    await this.admin.disconnect().catch(() => undefined);
  }
}

class KafkajsProducer implements DriverProducer {
  private txn: Transaction | undefined;
  private readonly compression: CompressionTypes;

  constructor(
    private readonly producer: Producer,
    private readonly config: KafkaSinkConfig,
  ) {
    this.compression = config.compression === 'gzip' ? CompressionTypes.GZIP : CompressionTypes.None;
  }

  get inTransaction(): boolean {
    return this.txn?.isActive() === true;
  }

  private batch(req: ProduceRequest) {
    const topics = new Map<string, Message[]>();
    for (const seg of req.segments) {
      const all = kafkajsMessages(seg.records);
      let list = topics.get(seg.records.topic);
      if (list === undefined) {
        list = [];
        topics.set(seg.records.topic, list);
      }
      for (let i = seg.from; i < seg.to; i++) list.push(all[i]!);
    }
    return {
      acks: -1,
      timeout: this.config.requestTimeoutMs,
      compression: this.compression,
      topicMessages: [...topics].map(([topic, messages]) => ({ topic, messages })),
    };
  }

  async send(requests: readonly ProduceRequest[], check: () => void): Promise<SendFailure | undefined> {
    const target = this.txn ?? this.producer;
    for (const [k, req] of requests.entries()) {
      try {
        check();
        await target.sendBatch(this.batch(req));
      } catch (error) {
        return { failedAt: k, error };
      }
    }
    return undefined;
  }

  async beginTransaction(): Promise<void> {
    if (this.txn?.isActive()) throw new KafkaError('a transaction is already open', false);
    this.txn = await this.producer.transaction();
  }

  async commitTransaction(): Promise<void> {
    const txn = this.txn;
    if (txn === undefined) throw new KafkaError('no transaction is open', false);
    await txn.commit();
    this.txn = undefined;
  }

  async abortTransaction(): Promise<boolean> {
    const txn = this.txn;
    this.txn = undefined;
    if (txn === undefined || !txn.isActive()) return true;
    return txn.abort().then(
      () => true,
      () => false,
    );
  }

  async close(): Promise<void> {
    await Promise.race([this.producer.disconnect().catch(() => undefined), new Promise((r) => setTimeout(r, 5000))]);
  }
}
