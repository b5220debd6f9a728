// One conformance suite for every Kafka driver (gateway/sinks/kafka/driver.ts), run against a real
// single-node Kafka (one broker for the file): what the sink core relies on, driver by driver.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Partitioners, type PartitionMetadata } from 'kafkajs';
import { startKafka, waitFor, type KafkaBroker } from '../harness/index.js';
import { gatewayConfigSchema, HEADER_NAMES } from '../../gateway/config.js';
import type { DriverProducer, KafkaDriver, KafkaSinkConfig } from '../../gateway/sinks/kafka/driver.js';
import { KafkajsDriver } from '../../gateway/sinks/kafka/kafkajs/driver.js';
import { createLibrdkafkaDriver } from '../../gateway/sinks/kafka/librdkafka/driver.js';
import { RequestPacker, fileRecords, givenRecords, type ChunkRecords, type ProduceRequest } from '../../gateway/sinks/kafka/records.js';
import { classifyError, errorTypes } from '../../gateway/sinks/kafka/classify.js';
import { silentLogger } from '../../shared/log.js';
import { lineOffsets, makeLines, testChunk, type ChunkSpec } from '../unit/gateway/sinks/fixtures.js';

let kafka: KafkaBroker;

// librdkafka twice: with Ferry's batch producer addon (what runs when it is built) and with the
// binding's produce() (the fallback when it is not).
const DRIVERS: ReadonlyArray<{ name: string; driver: string; make: (config: KafkaSinkConfig) => Promise<KafkaDriver> }> = [
  { name: 'kafkajs', driver: 'kafkajs', make: (config) => Promise.resolve(new KafkajsDriver({ config, log: silentLogger() })) },
  { name: 'librdkafka', driver: 'librdkafka', make: (config) => createLibrdkafkaDriver({ config, log: silentLogger() }, { producer: 'batch' }) },
  { name: 'librdkafka-binding', driver: 'librdkafka', make: (config) => createLibrdkafkaDriver({ config, log: silentLogger() }, { producer: 'binding' }) },
];

before(async () => {
  kafka = await startKafka();
});

after(async () => {
  await kafka?.destroy();
});

const fileSet = (spec: ChunkSpec): ChunkRecords => fileRecords(testChunk(spec), { headers: HEADER_NAMES, key: 'none' });

function pack(sets: readonly ChunkRecords[], maxBatchBytes = 900 * 1024): ProduceRequest[] {
  const packer = new RequestPacker({ maxBatchBytes, maxBatchRecords: 10_000 });
  for (const s of sets) packer.addAll(s);
  return packer.requests;
}

/** Where the Java client (and kafkajs' default partitioner) puts `key` in a topic of `n` partitions. */
function javaPartition(topic: string, key: Buffer, n: number): number {
  const partitionMetadata = Array.from({ length: n }, (_, partitionId): PartitionMetadata => ({ partitionId, leader: 1, partitionErrorCode: 0, replicas: [1], isr: [1] }));
  return Partitioners.DefaultPartitioner()({ topic, partitionMetadata, message: { key, value: null } });
}

const never = (): void => undefined;

for (const { name, driver: driverName, make } of DRIVERS) {
  describe(`Kafka driver conformance: ${name}`, () => {
    let driver: KafkaDriver;
    const producers: DriverProducer[] = [];
    const t = (base: string): string => `${base}-${name}`;

    function config(overrides: Record<string, unknown> = {}): KafkaSinkConfig {
      return gatewayConfigSchema.parse({ id: 'gw-test', kafka: { brokers: kafka.brokers, requestTimeoutMs: 10_000, driver: driverName, ...overrides }, http: { allowAnonymous: true } }).kafka;
    }

    async function producer(transactionalId?: string, d = driver): Promise<DriverProducer> {
      const p = await d.createProducer({ ...(transactionalId ? { transactionalId } : {}), transactionTimeoutMs: 60_000 });
      producers.push(p);
      return p;
    }

    before(async () => {
      driver = await make(config());
      await driver.connect();
    });

    after(async () => {
      for (const p of producers) await p.close();
      await driver?.close();
    });

    it('produces requests in order with the ferry headers, keys and explicit partitions as given', async () => {
      const topic = t('conf-produce');
      await kafka.createTopic(topic, { partitions: 3 });
      const spec: ChunkSpec = { seq: 7, topic, lines: makeLines(300, 100, 'f'), offsetStart: 1000 };
      const file = fileSet(spec);
      const keyA = Buffer.from('key-a');
      const given = givenRecords(
        topic,
        [
          { key: keyA, value: Buffer.from('keyed-1'), headers: { h: Buffer.from('v1') } },
          { key: null, value: Buffer.from('explicit-2'), partition: 2 },
          { key: keyA, value: Buffer.from('keyed-2') },
        ],
        1_700_000_000_000,
      );
      // small requests: the file chunk spans several of them
      const requests = pack([file, given], 8 * 1024);
      assert.ok(requests.length >= 3, `${requests.length} requests`);
      const p = await producer();
      assert.equal(await p.send(requests, never), undefined);

      const records = await kafka.readAll(topic, { expect: 303 });
      const lines = records.filter((r) => r.headers['ferry.seq'] === '7');
      assert.equal(lines.length, 300);
      assert.equal(new Set(lines.map((r) => r.partition)).size, 1, 'an unkeyed chunk stays in one partition');
      const offsets = lineOffsets(spec.lines, 1000);
      for (const [i, r] of lines.entries()) {
        assert.ok(r.value.equals(spec.lines[i] as Buffer), `line ${i} in order, byte-exact`);
        assert.deepEqual(
          r.rawHeaders.map(([h]) => h),
          ['ferry.agent', 'ferry.host', 'ferry.path', 'ferry.offset', 'ferry.seq'],
        );
        assert.equal(r.headers['ferry.offset'], String(offsets[i]));
        assert.equal(r.headers['ferry.agent'], 'agent-1');
        assert.equal(r.key, null);
        assert.equal(r.timestamp, 1_700_000_000_007);
      }
      const byValue = new Map(records.map((r) => [r.value.toString(), r]));
      const keyed1 = byValue.get('keyed-1')!;
      const keyed2 = byValue.get('keyed-2')!;
      assert.equal(keyed1.partition, javaPartition(topic, keyA, 3), 'a keyed record goes where the Java client puts it');
      assert.equal(keyed2.partition, keyed1.partition);
      assert.ok(keyed2.offset > keyed1.offset, 'records of one partition keep their order');
      assert.deepEqual(keyed1.rawHeaders, [['h', Buffer.from('v1')]]);
      assert.ok(keyed1.key?.equals(keyA));
      assert.equal(byValue.get('explicit-2')!.partition, 2);
    });

    it('spreads unkeyed chunks over the partitions, each chunk whole in one partition', async () => {
      const topic = t('conf-spread');
      await kafka.createTopic(topic, { partitions: 3 });
      const sets = Array.from({ length: 6 }, (_, i) => fileSet({ seq: i + 1, topic, lines: makeLines(50, 50, `c${i}`) }));
      const p = await producer();
      assert.equal(await p.send(pack(sets, 4096), never), undefined);
      const records = await kafka.readAll(topic, { expect: 300 });
      assert.equal(records.length, 300);
      const partitionsOf = new Map<string, Set<number>>();
      for (const r of records) {
        const seq = r.headers['ferry.seq']!;
        partitionsOf.set(seq, (partitionsOf.get(seq) ?? new Set()).add(r.partition));
      }
      for (const [seq, parts] of partitionsOf) assert.equal(parts.size, 1, `chunk ${seq} in one partition`);
      assert.ok(new Set([...partitionsOf.values()].map((s) => [...s][0])).size >= 2, 'chunks go to more than one partition');
    });

    it('makes a committed transaction visible to read_committed and an aborted one not', async () => {
      const topic = t('conf-txn');
      await kafka.createTopic(topic);
      const p = await producer(t('conf-txn-id'));
      await p.beginTransaction();
      assert.equal(p.inTransaction, true);
      assert.equal(await p.send(pack([fileSet({ seq: 1, topic, lines: ['committed-1', 'committed-2'] })]), never), undefined);
      await p.commitTransaction();
      assert.equal(p.inTransaction, false);
      await p.beginTransaction();
      assert.equal(await p.send(pack([fileSet({ seq: 2, topic, lines: ['aborted-1'] })]), never), undefined);
      assert.equal(await p.abortTransaction(), true);
      await p.beginTransaction();
      assert.equal(await p.send(pack([fileSet({ seq: 3, topic, lines: ['committed-3'] })]), never), undefined);
      await p.commitTransaction();
      const committed = await kafka.readAll(topic, { isolation: 'read_committed' });
      assert.deepEqual(committed.map((r) => r.value.toString()), ['committed-1', 'committed-2', 'committed-3']);
      const all = await kafka.readAll(topic, { isolation: 'read_uncommitted' });
      assert.deepEqual(all.map((r) => r.value.toString()), ['committed-1', 'committed-2', 'aborted-1', 'committed-3'], 'the aborted record was written');
    });

    it('fences an older producer of the same transactional id when a new one is created', async () => {
      const topic = t('conf-fence');
      await kafka.createTopic(topic);
      const old = await producer(t('conf-fence-id'));
      await producer(t('conf-fence-id'));
      let error: unknown;
      try {
        await old.beginTransaction();
        const failed = await old.send(pack([fileSet({ seq: 1, topic, lines: ['from-the-fenced-producer'] })]), never);
        if (failed !== undefined) throw failed.error;
        await old.commitTransaction();
      } catch (err) {
        error = err;
      }
      assert.ok(error !== undefined, 'the fenced producer cannot commit');
      assert.equal(classifyError(error), 'fenced', `types: ${errorTypes(error).join(', ')}: ${error instanceof Error ? error.message : '?'}`);
      assert.deepEqual(await kafka.readAll(topic), []);
    });

    it('aborts the transaction an older producer left open when a new one is created', async () => {
      const topic = t('conf-open');
      await kafka.createTopic(topic);
      const old = await producer(t('conf-open-id'));
      await old.beginTransaction();
      assert.equal(await old.send(pack([fileSet({ seq: 1, topic, lines: ['left-open-1', 'left-open-2'] })]), never), undefined);
      const stuck = await driver.endOffsets(topic);
      assert.equal(stuck.get(0)?.high, 0, 'the open transaction holds the last stable offset');
      await producer(t('conf-open-id'));
      await waitFor(async () => ((await driver.endOffsets(topic)).get(0)?.high ?? 0) >= 3, 10_000, 'the last stable offset to pass the aborted transaction');
      assert.deepEqual(await kafka.readAll(topic), []);
      assert.equal((await kafka.readAll(topic, { isolation: 'read_uncommitted' })).length, 2);
    });

    it('fails a lone record over the topic max.message.bytes with MESSAGE_TOO_LARGE at its request, the requests before it acknowledged', async () => {
      const topic = t('conf-large');
      await kafka.createTopic(topic, { config: { 'max.message.bytes': String(64 * 1024) } });
      const before = fileSet({ seq: 1, topic, lines: makeLines(20, 100, 'before') });
      const big = fileSet({ seq: 2, topic, lines: [Buffer.alloc(100_000, 'L')] });
      const behind = fileSet({ seq: 3, topic, lines: makeLines(20, 100, 'behind') });
      // the core packs with kafka.maxBatchBytes: the driver is told the same limit
      const requests = pack([before, big, behind], 16 * 1024);
      assert.equal(requests.length, 3);
      assert.equal(requests[1]!.records, 1);
      const small = await make(config({ maxBatchBytes: 16 * 1024 }));
      let failed;
      try {
        await small.connect();
        const p = await producer(undefined, small);
        failed = await p.send(requests, never);
      } finally {
        await small.close();
      }
      assert.ok(failed !== undefined, 'the send fails');
      assert.equal(failed.failedAt, 1, String(failed.error));
      assert.ok(errorTypes(failed.error).includes('MESSAGE_TOO_LARGE'), `types: ${errorTypes(failed.error).join(', ')}`);
      const records = await kafka.readAll(topic);
      assert.deepEqual(
        records.filter((r) => r.headers['ferry.seq'] === '1').map((r) => r.value.toString('latin1', 0, 9)),
        Array.from({ length: 20 }, (_, i) => `before-${i}:`.slice(0, 9)),
        'the request before it is in Kafka',
      );
    });

    it('fails a request for a topic Kafka does not have with UNKNOWN_TOPIC_OR_PARTITION', async () => {
      const p = await producer();
      const failed = await p.send(pack([fileSet({ seq: 1, topic: t('conf-missing'), lines: ['nowhere'] })]), never);
      assert.ok(failed !== undefined, 'the send fails');
      assert.equal(failed.failedAt, 0);
      assert.ok(errorTypes(failed.error).includes('UNKNOWN_TOPIC_OR_PARTITION'), `types: ${errorTypes(failed.error).join(', ')}`);
      assert.equal(await driver.partitionCount(t('conf-missing')), undefined);
    });

    it('stops before the request whose check() throws, with that error at that request', async () => {
      const topic = t('conf-check');
      await kafka.createTopic(topic);
      const sets = [1, 2, 3].map((seq) => fileSet({ seq, topic, lines: makeLines(30, 100, `k${seq}`) }));
      const requests = pack(sets, 4096);
      assert.ok(requests.length >= 3);
      const stop = new Error('stop here');
      let calls = 0;
      const p = await producer();
      const failed = await p.send(requests, () => {
        if (++calls === 2) throw stop;
      });
      assert.equal(failed?.failedAt, 1);
      assert.equal(failed?.error, stop);
      const records = await kafka.readAll(topic);
      assert.equal(records.length, requests[0]!.records, 'only the first request was sent');
    });

    it('reads a topic from the beginning, its positions reaching the end offsets past committed and aborted transactions', async () => {
      const topic = t('conf-reader');
      await kafka.createTopic(topic);
      const p = await producer(t('conf-reader-id'));
      const marker = (key: string): ChunkRecords => givenRecords(topic, [{ key: Buffer.from(key), value: Buffer.from('{}') }], Date.now());
      for (const [keys, commit] of [[['a/1', 'a/2'], true], [['a/3'], false], [['a/4'], true]] as const) {
        await p.beginTransaction();
        assert.equal(await p.send(pack(keys.map(marker)), never), undefined);
        if (commit) await p.commitTransaction();
        else assert.equal(await p.abortTransaction(), true);
      }
      // A commit returns once the coordinator logged it; its markers reach the partition just after.
      let end = await driver.endOffsets(topic);
      await waitFor(async () => ((end = await driver.endOffsets(topic)).get(0)?.high ?? 0) >= 7, 10_000, 'the last stable offset past the last commit marker');
      const keys: string[] = [];
      let progress = 0;
      const reader = driver.createReader({ topic, gatewayId: 'gw-test', onKeys: (ks) => keys.push(...ks.map((k) => k?.toString() ?? 'null')), onProgress: () => progress++ });
      try {
        await reader.start();
        await waitFor(() => (reader.positions.get(0) ?? -1) >= end.get(0)!.high, 15_000, 'the reader to reach the end offset');
        assert.deepEqual(keys, ['a/1', 'a/2', 'a/4']);
        assert.ok(progress > 0);
        assert.equal(reader.positions.get(0), end.get(0)!.high);
      } finally {
        await reader.stop();
      }
    });

    it('rejects connect() with a retriable KafkaError when no broker answers', async () => {
      const dead = await make(config({ brokers: ['127.0.0.1:1'], requestTimeoutMs: 2000 }));
      const started = Date.now();
      try {
        await assert.rejects(dead.connect(), (err: unknown) => classifyError(err) === 'retry');
      } finally {
        await dead.close();
      }
      assert.ok(Date.now() - started < 20_000, `${Date.now() - started} ms`);
    });

    it('lists, creates and describes topics: partition counts and topic settings', async () => {
      const topic = t('conf-admin');
      await driver.createTopic({ topic, partitions: 2, config: { 'retention.ms': '1234567', 'cleanup.policy': 'compact,delete' } });
      // (a compacted topic takes keyed records only)
      assert.ok((await driver.listTopics()).includes(topic));
      assert.equal(await driver.partitionCount(topic), 2);
      assert.deepEqual(await driver.topicConfig(topic, ['retention.ms', 'cleanup.policy']), { 'retention.ms': '1234567', 'cleanup.policy': 'compact,delete' });
      const offsets = await driver.endOffsets(topic);
      assert.deepEqual([...offsets.entries()].sort(), [
        [0, { low: 0, high: 0 }],
        [1, { low: 0, high: 0 }],
      ]);
      // usable at once (leaders elected)
      const p = await producer();
      assert.equal(await p.send(pack([givenRecords(topic, [{ key: Buffer.from('k'), value: Buffer.from('x'), partition: 1 }], Date.now())]), never), undefined);
    });
  });
}

describe('librdkafka driver only: compression codecs', () => {
  it('produces with lz4, zstd, snappy and gzip, read back by the read_committed reader', async () => {
    const codecs = ['lz4', 'zstd', 'snappy', 'gzip'] as const;
    const topic = 'conf-codecs-librdkafka';
    await kafka.createTopic(topic);
    const keys: string[] = [];
    for (const compression of codecs) {
      const config = gatewayConfigSchema.parse({ id: 'gw-test', kafka: { brokers: kafka.brokers, requestTimeoutMs: 10_000, driver: 'librdkafka', compression }, http: { allowAnonymous: true } }).kafka;
      const driver = await createLibrdkafkaDriver({ config, log: silentLogger() });
      await driver.connect();
      const p = await driver.createProducer({ transactionTimeoutMs: 60_000 });
      const records = Array.from({ length: 50 }, (_, i) => ({ key: Buffer.from(`${compression}-${i}`), value: Buffer.alloc(500, compression) }));
      assert.equal(await p.send(pack([givenRecords(topic, records, Date.now())]), never), undefined, compression);
      await p.close();
      await driver.close();
      keys.push(...records.map((r) => r.key.toString()));
    }
    const reader = await createLibrdkafkaDriver({ config: gatewayConfigSchema.parse({ id: 'gw-test', kafka: { brokers: kafka.brokers, driver: 'librdkafka' }, http: { allowAnonymous: true } }).kafka, log: silentLogger() });
    await reader.connect();
    const read: string[] = [];
    const r = reader.createReader({ topic, gatewayId: 'gw-test', onKeys: (ks) => read.push(...ks.map((k) => k?.toString() ?? 'null')), onProgress: () => undefined });
    try {
      await r.start();
      await waitFor(() => read.length >= keys.length, 15_000, 'every compressed record to be read');
      assert.deepEqual(read, keys);
    } finally {
      await r.stop();
      await reader.close();
    }
  });
});
