// A fake kafkajs client for the Kafka sink's unit tests: topics, producers (plain and
// transactional) and an admin, in memory. Tests steer it through `onSend` / `onCommit` (throw to
// fail a request, await to hold it) and read what became visible with `committed()`.
import type { Kafka, KafkaConfig, Message, ProducerBatch } from 'kafkajs';
import { createKafkaSink, type KafkaSink } from '../../../../gateway/sinks/kafka/sink.js';
import { gatewayConfigSchema, type GatewayConfig } from '../../../../gateway/config.js';
import { createRegistry, type Registry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';

export interface SentRecord {
  topic: string;
  value: string;
  timestamp: string | undefined;
  headers: Message['headers'];
}

/** What one sendBatch call carried, and in which transaction (undefined: none). */
export interface SentBatch {
  txn: number | undefined;
  records: SentRecord[];
}

/** A kafkajs-shaped protocol error, as the sink's classifier sees them. */
export function protocolError(type: string, retriable = false): Error {
  return Object.assign(new Error(`fake ${type}`), { name: 'KafkaJSProtocolError', type, retriable });
}

export class FakeKafka {
  /** topic -> partition count */
  readonly topics = new Map<string, number>();
  /** Called for every sendBatch (in a transaction or not) before it counts; may throw or wait. */
  onSend: (batch: SentBatch, index: number) => void | Promise<void> = () => undefined;
  /** Called for every transaction commit before it counts; may throw or wait. */
  onCommit: (txn: number) => void | Promise<void> = () => undefined;
  readonly batches: SentBatch[] = [];
  readonly log: string[] = [];
  private visible: SentRecord[] = [];
  private txns = 0;
  listTopicsCalls = 0;

  constructor(topics: Record<string, number> = {}) {
    for (const [t, n] of Object.entries(topics)) this.topics.set(t, n);
  }

  /** Records visible to a read_committed consumer, in produce order. */
  committed(topic?: string): SentRecord[] {
    return topic === undefined ? [...this.visible] : this.visible.filter((r) => r.topic === topic);
  }

  values(topic: string): string[] {
    return this.committed(topic).map((r) => r.value);
  }

  private toRecords(batch: ProducerBatch): SentRecord[] {
    return (batch.topicMessages ?? []).flatMap(({ topic, messages }) =>
      messages.map((m) => ({ topic, value: Buffer.isBuffer(m.value) ? m.value.toString() : String(m.value), timestamp: m.timestamp, headers: m.headers })),
    );
  }

  private async send(batch: ProducerBatch, txn: number | undefined): Promise<SentRecord[]> {
    const sent: SentBatch = { txn, records: this.toRecords(batch) };
    const index = this.batches.length;
    this.batches.push(sent);
    await this.onSend(sent, index);
    return sent.records;
  }

  private producer() {
    const producer = {
      connect: () => Promise.resolve(),
      disconnect: () => Promise.resolve(),
      sendBatch: async (batch: ProducerBatch) => {
        this.visible.push(...(await this.send(batch, undefined)));
        return [];
      },
      transaction: () => {
        const id = ++this.txns;
        let active = true;
        const pending: SentRecord[] = [];
        return Promise.resolve({
          isActive: () => active,
          sendBatch: async (batch: ProducerBatch) => {
            if (!active) throw new Error('fake: transaction is not active');
            pending.push(...(await this.send(batch, id)));
            return [];
          },
          commit: async () => {
            this.log.push(`commit ${id}`);
            await this.onCommit(id);
            if (!active) throw new Error('fake: transaction is not active');
            active = false;
            this.visible.push(...pending);
          },
          abort: () => {
            this.log.push(`abort ${id}`);
            active = false;
            return Promise.resolve();
          },
        });
      },
    };
    return producer;
  }

  private admin() {
    return {
      connect: () => Promise.resolve(),
      disconnect: () => Promise.resolve(),
      listTopics: () => {
        this.listTopicsCalls++;
        return Promise.resolve([...this.topics.keys()]);
      },
      createTopics: ({ topics }: { topics: Array<{ topic: string }> }) => {
        for (const t of topics) this.topics.set(t.topic, 1);
        return Promise.resolve(true);
      },
      fetchTopicMetadata: ({ topics }: { topics: string[] }) =>
        Promise.resolve({ topics: topics.filter((t) => this.topics.has(t)).map((name) => ({ name, partitions: Array.from({ length: this.topics.get(name)! }, (_, partitionId) => ({ partitionId })) })) }),
      describeConfigs: () => Promise.resolve({ resources: [{ configEntries: [] }] }),
      fetchTopicOffsets: () => Promise.resolve([{ partition: 0, low: '0', high: '0', offset: '0' }]),
      deleteGroups: () => Promise.resolve([]),
    };
  }

  private consumer() {
    return {
      events: { END_BATCH_PROCESS: 'end-batch', CRASH: 'crash' },
      on: () => () => undefined,
      connect: () => Promise.resolve(),
      subscribe: () => Promise.resolve(),
      run: () => Promise.resolve(),
      disconnect: () => Promise.resolve(),
    };
  }

  /** The `createClient` option of the sink. */
  readonly client = (_config: KafkaConfig): Kafka =>
    ({ producer: () => this.producer(), admin: () => this.admin(), consumer: () => this.consumer() }) as unknown as Kafka;
}

export function fakeSinkConfig(overrides: Record<string, unknown> = {}): GatewayConfig['kafka'] {
  return gatewayConfigSchema.parse({ kafka: { brokers: ['fake:9092'], lingerMs: 0, ...overrides }, http: { allowAnonymous: true } }).kafka;
}

/** A started sink on a fake Kafka. */
export async function fakeSink(fake: FakeKafka, overrides: Record<string, unknown> = {}, registry: Registry = createRegistry({ defaultMetrics: false })): Promise<KafkaSink> {
  const sink = createKafkaSink(fakeSinkConfig(overrides), { gatewayId: 'gw-fake', log: silentLogger(), registry, createClient: fake.client });
  await sink.start();
  return sink;
}

/** A promise with its resolve, to hold a fake request until the test lets it go. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}
