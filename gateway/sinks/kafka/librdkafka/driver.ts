/**
 * The librdkafka driver (driver.ts): @confluentinc/kafka-javascript's native API (not its
 * KafkaJS-compatible layer), loaded only when `kafka.driver` is `librdkafka` (native.ts).
 *
 * - Producer: idempotent, acks=all, librdkafka's accumulator per send; exactly-once adds
 *   transactional.id (initTransactions fences the previous producer of that id and aborts the
 *   transaction it left open; verified by the conformance suite). Two implementations of the same
 *   contract: native-producer.ts on Ferry's addon ferry-rdkafka-batch (a chunk per C call,
 *   delivery reports counted per request in C), used when it is built, and binding-producer.ts
 *   on the binding's produce() (a call per record; failed records' reports only), the fallback.
 *   Both get their librdkafka properties from config.ts.
 * - Partitions of unkeyed records: one per ChunkRecords, round-robin over the topic's partition
 *   count (cached per topic for a minute, LRU-bounded; looked up again when a picked partition
 *   is refused); keyed records: librdkafka's murmur2 (where the Java client puts them).
 * - Reader (reader.ts): a KafkaConsumer assign()ed from the beginning, read_committed.
 * - Admin: the native AdminClient (listTopics, describeTopics, createTopic, listOffsets with
 *   read_committed for the last stable offset). The binding has no DescribeConfigs, so
 *   topicConfig() asks through a kafkajs admin client (created on first use), which can
 *   authenticate with plain and scram only: with oauthbearer or gssapi it rejects, and the
 *   core only logs that it could not check the committed topic's settings.
 * - librdkafka's log and error events go to the gateway's logger (warnings and errors at most
 *   once per facility, or per error message, every 10 s; the rest at debug).
 */
import { Kafka } from 'kafkajs';
import type { Admin } from 'kafkajs';
import type { Logger } from '../../../../shared/log.js';
import { ConfigError, KafkaError, errorMessage } from '../../../../shared/errors.js';
import { LruMap } from '../bounded.js';
import type { DriverContext, DriverProducer, DriverReader, KafkaDriver, ProducerOptions, ReaderOptions, TopicSpec } from '../driver.js';
import { kafkaClientConfig } from '../kafkajs/driver.js';
import { adminConfig, asStrings, producerConfig, readerConfig } from './config.js';
import { codeNames, errorFromName, toKafkaError, type CodeNames } from './errors.js';
import { call, load, type Callback, type ListedOffset, type TopicDescription, type NativeAdmin, type NativeError, type BindingProducer, type RdKafka } from './native.js';
import { BINDING_REPORTS, BindingFallbackProducer, type PartitionPicker } from './binding-producer.js';
import { NativeProducer, librdkafkaLog, loadBatchAddon, type BatchAddon } from './native-producer.js';
import { LibrdkafkaReader } from './reader.js';

/** How long a topic's partition count is used before it is looked up again. */
const PARTITIONS_MAX_AGE_MS = 60_000;
/** How long connect() waits for Kafka's first answer. */
const CONNECT_TIMEOUT_MS = 10_000;
const TOPIC_CACHE_MAX = 10_000;

interface EventSource {
  on(event: 'event.error', fn: (err: NativeError) => void): void;
  on(event: 'event.log', fn: (log: { severity: number; fac: string; message: string }) => void): void;
}

/** Routes a binding client's log and error events to the gateway's logger (client-log.ts, throttled). */
function watchEvents(client: EventSource, log: Logger): void {
  const out = librdkafkaLog(log);
  // (the binding's error events carry librdkafka's message only: no code, no fatal flag)
  client.on('event.error', (err) => out(3, 'ERROR', err.message));
  client.on('event.log', (entry) => out(entry.severity, entry.fac, entry.message));
}

export interface LibrdkafkaDriverOptions {
  /**
   * The producer: `batch` (Ferry's addon ferry-rdkafka-batch, native-producer.ts: a chunk per C
   * call), `binding` (the binding's produce() per record, binding-producer.ts), or `auto`
   * (default): batch when the addon loads, else binding, with a warning.
   */
  producer?: 'auto' | 'batch' | 'binding';
}

/**
 * `kafka.driver: librdkafka`. Rejects with a ConfigError naming kafka.driver when the package
 * cannot be loaded, and naming kafka.librdkafka (or kafka) when librdkafka refuses a property
 * (unknown name, bad value): its clients check their settings when made, before connecting.
 */
export function createLibrdkafkaDriver(ctx: DriverContext, opts: LibrdkafkaDriverOptions = {}): Promise<KafkaDriver> {
  try {
    const lib = load();
    const c = ctx.config;
    try {
      new lib.Producer(producerConfig(c, { transactionalId: 'ferry-settings-check', transactionTimeoutMs: 60_000 }));
      new lib.KafkaConsumer(readerConfig(c, 'ferry-settings-check'), {});
    } catch (err) {
      const path = Object.keys(c.librdkafka).length > 0 ? 'kafka.librdkafka' : 'kafka';
      throw new ConfigError([{ path, message: `librdkafka refuses the settings: ${errorMessage(err)}` }], undefined, { cause: err });
    }
    let batch: BatchAddon | undefined;
    const want = opts.producer ?? 'auto';
    if (want !== 'binding') {
      try {
        batch = loadBatchAddon();
      } catch (err) {
        if (want === 'batch') throw new KafkaError(`the batch producer ferry-rdkafka-batch cannot be loaded: ${errorMessage(err)}`, false, { cause: err });
        ctx.log.warn({ err: errorMessage(err) }, "librdkafka: Ferry's batch producer (ferry-rdkafka-batch) is not built; producing through the binding, at about 3x the CPU per record");
      }
    }
    return Promise.resolve(new LibrdkafkaDriver(ctx, lib, batch));
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new Error(String(err)));
  }
}

export class LibrdkafkaDriver implements KafkaDriver {
  readonly name = 'librdkafka';
  private readonly names: CodeNames;
  private admin: NativeAdmin | undefined;
  /** admin requests in flight (see ask()) */
  private readonly inflight = new Set<Promise<unknown>>();
  private kafkajsAdmin: Admin | undefined;
  private readonly counts = new LruMap<string, { count: number; at: number; next: number }>(TOPIC_CACHE_MAX);
  private readonly log: Logger;

  constructor(
    private readonly ctx: DriverContext,
    private readonly lib: RdKafka,
    /** Ferry's batch producer addon; undefined: the binding's produce() */
    private readonly batch: BatchAddon | undefined,
  ) {
    this.names = codeNames(lib.CODES.ERRORS);
    this.log = ctx.log.child({ driver: 'librdkafka' });
  }

  private get timeoutMs(): number {
    return Math.max(1000, Math.min(this.ctx.config.requestTimeoutMs, 30_000));
  }

  private error(err: unknown, what: string): KafkaError {
    return toKafkaError(err, what, { names: this.names });
  }

  /**
   * One admin request, remembered until it settles: the binding's synchronous disconnect()
   * waits for the requests in flight (a lock they hold for up to their timeout), so close()
   * must not call it while there are any, or the event loop stops for that long.
   */
  private ask<T>(fn: (admin: NativeAdmin, cb: Callback<T>) => void): Promise<T> {
    const admin = this.admin;
    if (admin === undefined) return Promise.reject(new KafkaError('the librdkafka driver is not connected', true));
    const p = call<T>((cb) => fn(admin, cb));
    this.inflight.add(p);
    const forget = (): void => void this.inflight.delete(p);
    p.then(forget, forget);
    return p;
  }

  async connect(): Promise<void> {
    if (this.admin === undefined) {
      const admin = this.lib.AdminClient.create(adminConfig(this.ctx.config));
      watchEvents(admin as unknown as EventSource, this.log);
      this.admin = admin;
    }
    // The admin client connects lazily: ask for the metadata to know that Kafka answers, within
    // the time a connection may take (like kafkajs' connectionTimeout), not a whole request timeout.
    await this.listTopics(Math.min(this.timeoutMs, CONNECT_TIMEOUT_MS));
  }

  async listTopics(timeout = this.timeoutMs): Promise<string[]> {
    try {
      return await this.ask<string[]>((a, cb) => a.listTopics({ timeout }, cb));
    } catch (err) {
      throw this.error(err, 'cannot list the Kafka topics');
    }
  }

  async partitionCount(topic: string): Promise<number | undefined> {
    let described: TopicDescription[];
    try {
      described = await this.ask<TopicDescription[]>((a, cb) => a.describeTopics([topic], { timeout: this.timeoutMs }, cb));
    } catch (err) {
      const e = this.error(err, `cannot describe topic "${topic}"`);
      if ((e as { type?: string }).type === 'UNKNOWN_TOPIC_OR_PARTITION') return undefined;
      throw e;
    }
    const t = described.find((d) => d.name === topic);
    if (t === undefined || t.partitions.length === 0) return undefined;
    if (t.error !== undefined && t.error !== null) {
      const e = this.error(t.error, `cannot describe topic "${topic}"`);
      if ((e as { type?: string }).type === 'UNKNOWN_TOPIC_OR_PARTITION') return undefined;
      throw e;
    }
    return t.partitions.length;
  }

  async createTopic(spec: TopicSpec): Promise<void> {
    try {
      await this.ask((a, cb) => a.createTopic({ topic: spec.topic, num_partitions: spec.partitions, replication_factor: -1, config: { ...spec.config } }, this.timeoutMs, cb));
    } catch (err) {
      throw this.error(err, `cannot create topic "${spec.topic}"`);
    }
    // Like kafkajs' waitForLeaders: the topic is usable once every partition has a leader.
    const deadline = Date.now() + this.timeoutMs;
    while (Date.now() < deadline) {
      const described = await this.ask<TopicDescription[]>((a, cb) => a.describeTopics([spec.topic], { timeout: this.timeoutMs }, cb)).catch((): TopicDescription[] => []);
      const t = described.find((d) => d.name === spec.topic);
      if (t !== undefined && t.partitions.length === spec.partitions && t.partitions.every((p) => (p as { leader?: unknown }).leader != null)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  async topicConfig(topic: string, names: readonly string[]): Promise<Record<string, string | undefined>> {
    const mechanism = this.ctx.config.sasl?.mechanism;
    if (mechanism === 'oauthbearer' || mechanism === 'gssapi') {
      throw new KafkaError(`topic settings cannot be read with kafka.sasl.mechanism ${mechanism} (the librdkafka binding has no DescribeConfigs)`, false);
    }
    if (this.kafkajsAdmin === undefined) {
      const admin = new Kafka(kafkaClientConfig(this.ctx.config, this.log)).admin();
      await admin.connect();
      this.kafkajsAdmin = admin;
    }
    const res = await this.kafkajsAdmin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2 /* TOPIC */, name: topic }] });
    const entries = res.resources[0]?.configEntries ?? [];
    return Object.fromEntries(names.map((n) => [n, entries.find((e) => e.configName === n)?.configValue]));
  }

  async endOffsets(topic: string): Promise<Map<number, { low: number; high: number }>> {
    const count = await this.partitionCount(topic);
    const out = new Map<number, { low: number; high: number }>();
    if (count === undefined) return out;
    const ask = async (offset: unknown): Promise<Map<number, number>> => {
      const parts = Array.from({ length: count }, (_, partition) => ({ topic, partition, offset }));
      const res = await this.ask<ListedOffset[]>((a, cb) => a.listOffsets(parts, { timeout: this.timeoutMs, isolationLevel: this.lib.IsolationLevel.READ_COMMITTED }, cb));
      const m = new Map<number, number>();
      for (const r of res) {
        if (r.error) throw r.error;
        m.set(r.partition, Number(r.offset));
      }
      return m;
    };
    try {
      const [low, high] = [await ask(this.lib.OffsetSpec.EARLIEST), await ask(this.lib.OffsetSpec.LATEST)];
      for (const [p, h] of high) out.set(p, { low: low.get(p) ?? 0, high: h });
    } catch (err) {
      throw this.error(err, `cannot read the end offsets of topic "${topic}"`);
    }
    return out;
  }

  /** Round-robin partition picks per topic (see the top of this file). */
  private readonly picker: PartitionPicker = {
    pick: async (topic: string): Promise<number> => {
      let known = this.counts.get(topic);
      if (known === undefined || Date.now() - known.at > PARTITIONS_MAX_AGE_MS) {
        // An unknown topic (auto-creation on, or to be refused by Kafka): partition 0 keeps the chunk together.
        const count = (await this.partitionCount(topic).catch(() => undefined)) ?? 1;
        known = { count, at: Date.now(), next: known?.next ?? Math.floor(Math.random() * count) };
        this.counts.set(topic, known);
      }
      const p = known.next % known.count;
      known.next = (p + 1) % known.count;
      return p;
    },
    refused: (topic: string): void => {
      this.counts.delete(topic);
    },
  };

  async createProducer(opts: ProducerOptions): Promise<DriverProducer> {
    const c = this.ctx.config;
    const properties = producerConfig(c, opts);
    const what = opts.transactionalId !== undefined ? `cannot start the transactional producer "${opts.transactionalId}"` : 'cannot start the producer';
    const timeoutMs = Math.max(c.requestTimeoutMs, 10_000);
    if (this.batch !== undefined) {
      try {
        return await NativeProducer.open({
          addon: this.batch,
          properties: asStrings(properties),
          transactional: opts.transactionalId !== undefined,
          partitionOf: (set) => this.picker.pick(set.topic),
          toError: errorFromName,
          log: librdkafkaLog(this.log),
          timeoutMs,
        });
      } catch (err) {
        throw toKafkaError(err, what, { names: this.names });
      }
    }
    let native: BindingProducer;
    try {
      native = new this.lib.Producer({ ...properties, ...BINDING_REPORTS });
    } catch (err) {
      throw new KafkaError(`librdkafka refused the producer settings (check kafka.librdkafka): ${errorMessage(err)}`, false, { cause: err });
    }
    const producer = new BindingFallbackProducer(native, this.names, c, this.picker, this.log);
    watchEvents(native, this.log);
    try {
      await call((cb) => native.connect({ timeout: timeoutMs }, cb));
      // Serves error events and logs between flushes (a flush serves the delivery reports itself).
      native.setPollInterval(500);
      if (opts.transactionalId !== undefined) await call((cb) => native.initTransactions(timeoutMs, cb));
    } catch (err) {
      await producer.close();
      throw toKafkaError(err, what, { names: this.names });
    }
    return producer;
  }

  createReader(opts: ReaderOptions): DriverReader {
    return new LibrdkafkaReader(this.lib, this.ctx.config, (topic) => this.partitionCount(topic), (client) => watchEvents(client, this.log), this.log, opts);
  }

  async close(): Promise<void> {
    const admin = this.admin;
    this.admin = undefined;
    const disconnect = (): void => {
      try {
        admin?.disconnect();
      } catch {
        // already disconnected
      }
    };
    // Requests in flight end within their timeout; disconnect then, without waiting here.
    if (this.inflight.size === 0) disconnect();
    else void Promise.allSettled([...this.inflight]).then(disconnect);
    await this.kafkajsAdmin?.disconnect().catch(() => undefined);
    this.kafkajsAdmin = undefined;
  }
}
