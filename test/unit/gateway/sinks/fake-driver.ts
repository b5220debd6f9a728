// A fake Kafka driver (gateway/sinks/kafka/driver.ts) for the sink core's unit tests: topics,
// producers (plain and transactional) and an admin side, in memory. Tests steer it through
// `onSend` / `onCommit` (throw to fail a request, await to hold it) and read what became visible
// with `committed()`.
import { createKafkaSink, type KafkaSink } from '../../../../gateway/sinks/kafka/sink.js';
import type { DriverProducer, DriverReader, KafkaDriver, SendFailure } from '../../../../gateway/sinks/kafka/driver.js';
import type { ProduceRequest } from '../../../../gateway/sinks/kafka/records.js';
import { gatewayConfigSchema, type GatewayConfig } from '../../../../gateway/config.js';
import { createRegistry, type Registry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';

export interface SentRecord {
  topic: string;
  value: string;
  timestamp: number;
}

/** What one produce request carried, and in which transaction (undefined: none). */
export interface SentBatch {
  txn: number | undefined;
  records: SentRecord[];
}

/** A protocol error as the sink's classifier sees them (a `type` naming the Kafka error). */
export function protocolError(type: string, retriable = false): Error {
  return Object.assign(new Error(`fake ${type}`), { name: 'KafkaJSProtocolError', type, retriable });
}

function toRecords(req: ProduceRequest): SentRecord[] {
  const out: SentRecord[] = [];
  for (const seg of req.segments) {
    const set = seg.records;
    for (let i = seg.from; i < seg.to; i++) {
      const value = set.file !== undefined ? set.file.chunk.records[i]!.value : set.given![i]!.value;
      out.push({ topic: set.topic, value: value.toString(), timestamp: set.timestampMs });
    }
  }
  return out;
}

export class FakeKafka implements KafkaDriver {
  readonly name = 'fake';
  /** topic -> partition count */
  readonly topics = new Map<string, number>();
  /** Called for every produce request (in a transaction or not) before it counts; may throw or wait. */
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

  connect(): Promise<void> {
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }

  listTopics(): Promise<string[]> {
    this.listTopicsCalls++;
    return Promise.resolve([...this.topics.keys()]);
  }

  partitionCount(topic: string): Promise<number | undefined> {
    return Promise.resolve(this.topics.get(topic));
  }

  createTopic(spec: { topic: string; partitions: number }): Promise<void> {
    this.topics.set(spec.topic, spec.partitions);
    return Promise.resolve();
  }

  topicConfig(): Promise<Record<string, string | undefined>> {
    return Promise.resolve({});
  }

  endOffsets(): Promise<Map<number, { low: number; high: number }>> {
    return Promise.resolve(new Map([[0, { low: 0, high: 0 }]]));
  }

  createReader(): DriverReader {
    return { start: () => Promise.resolve(), positions: new Map(), lastError: undefined, stop: () => Promise.resolve() };
  }

  createProducer(): Promise<DriverProducer> {
    let open: { id: number; active: boolean; pending: SentRecord[] } | undefined;
    const producer: DriverProducer = {
      get inTransaction() {
        return open?.active === true;
      },
      send: async (requests, check): Promise<SendFailure | undefined> => {
        for (const [k, req] of requests.entries()) {
          try {
            check();
            if (open !== undefined && !open.active) throw new Error('fake: transaction is not active');
            const sent: SentBatch = { txn: open?.id, records: toRecords(req) };
            const index = this.batches.length;
            this.batches.push(sent);
            await this.onSend(sent, index);
            if (open !== undefined) open.pending.push(...sent.records);
            else this.visible.push(...sent.records);
          } catch (error) {
            return { failedAt: k, error };
          }
        }
        return undefined;
      },
      beginTransaction: () => {
        open = { id: ++this.txns, active: true, pending: [] };
        return Promise.resolve();
      },
      commitTransaction: async () => {
        const txn = open!;
        this.log.push(`commit ${txn.id}`);
        await this.onCommit(txn.id);
        if (!txn.active) throw new Error('fake: transaction is not active');
        txn.active = false;
        this.visible.push(...txn.pending);
        open = undefined;
      },
      abortTransaction: () => {
        if (open !== undefined) {
          this.log.push(`abort ${open.id}`);
          open.active = false;
        }
        open = undefined;
        return Promise.resolve(true);
      },
      close: () => Promise.resolve(),
    };
    return Promise.resolve(producer);
  }
}

export function fakeSinkConfig(overrides: Record<string, unknown> = {}): GatewayConfig['kafka'] {
  return gatewayConfigSchema.parse({ kafka: { brokers: ['fake:9092'], lingerMs: 0, ...overrides }, http: { allowAnonymous: true } }).kafka;
}

/** A started sink on a fake Kafka. */
export async function fakeSink(fake: FakeKafka, overrides: Record<string, unknown> = {}, registry: Registry = createRegistry({ defaultMetrics: false })): Promise<KafkaSink> {
  const sink = createKafkaSink(fakeSinkConfig(overrides), { gatewayId: 'gw-fake', log: silentLogger(), registry, driver: fake });
  await sink.start();
  return sink;
}

/** A promise with its resolve, to hold a fake request until the test lets it go. */
export function gate(): { promise: Promise<void>; open: () => void } {
  let open!: () => void;
  const promise = new Promise<void>((r) => (open = r));
  return { promise, open };
}
