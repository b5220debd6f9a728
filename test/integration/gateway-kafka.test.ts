// The gateway's Kafka sink against a real single-node Kafka (one broker for the whole file), once
// per Kafka driver (KAFKA_DRIVERS), each driver with topics and gateway ids of its own.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { KAFKA_DRIVERS, startKafka, waitFor, withDriver, type KafkaBroker, type KafkaDriverName, type KafkaRecordOut } from '../harness/index.js';
import { gatewayConfigSchema, type GatewayConfig } from '../../gateway/config.js';
import { createKafkaSink, type KafkaSink } from '../../gateway/sinks/kafka/sink.js';
import type { SinkChunk, SinkOutcome } from '../../gateway/sinks/sink.js';
import { createRegistry } from '../../shared/metrics.js';
import { silentLogger } from '../../shared/log.js';
import { lineOffsets, makeLines, testChunk, type ChunkSpec } from '../unit/gateway/sinks/fixtures.js';
import { Partitioners, type PartitionMetadata } from 'kafkajs';
import type { SinkRecord } from '../../gateway/sinks/sink.js';
import { syntheticChunk } from '../../gateway/inputs/http/produce.js';

let kafka: KafkaBroker;
const sinks: KafkaSink[] = [];

function kafkaConfig(driver: KafkaDriverName, overrides: Record<string, unknown>): GatewayConfig['kafka'] {
  return gatewayConfigSchema.parse({ id: 'gw-test', kafka: withDriver({ brokers: kafka.brokers, requestTimeoutMs: 10_000, ...overrides }, driver), http: { allowAnonymous: true } }).kafka;
}

async function startDriverSink(driver: KafkaDriverName, overrides: Record<string, unknown>, gatewayId: string): Promise<KafkaSink> {
  const sink = createKafkaSink(kafkaConfig(driver, overrides), { gatewayId, log: silentLogger(), registry: createRegistry({ defaultMetrics: false }) });
  await sink.start();
  sinks.push(sink);
  return sink;
}

function item(spec: ChunkSpec): SinkChunk {
  return { chunk: testChunk(spec), source: 'nats' };
}

function assertOk(outcomes: SinkOutcome[], duplicate = false): void {
  for (const [i, o] of outcomes.entries()) {
    assert.equal(o.kind, 'ok', `chunk ${i}: ${o.kind === 'ok' ? '' : o.error.message}`);
    if (o.kind === 'ok') assert.equal(o.duplicate, duplicate, `chunk ${i} duplicate flag`);
  }
}

/** Checks the records of the chunks, in order, against what the chunks held. */
function assertRecords(records: KafkaRecordOut[], specs: ChunkSpec[]): void {
  const want = specs.flatMap((s) => {
    const offsets = lineOffsets(s.lines, s.offsetStart ?? 0);
    return s.lines.map((l, i) => ({ spec: s, line: Buffer.isBuffer(l) ? l : Buffer.from(l), offset: offsets[i]! }));
  });
  assert.equal(records.length, want.length, 'record count');
  for (const [i, r] of records.entries()) {
    const w = want[i]!;
    assert.ok(r.value.equals(w.line), `record ${i} value is byte-exact`);
    assert.equal(r.headers['ferry.agent'], w.spec.agentId ?? 'agent-1');
    assert.equal(r.headers['ferry.host'], w.spec.host ?? 'host-1');
    assert.equal(r.headers['ferry.path'], w.spec.path ?? '/var/log/app.log');
    assert.equal(r.headers['ferry.offset'], String(w.offset));
    assert.equal(r.headers['ferry.seq'], String(w.spec.seq));
  }
}

before(async () => {
  kafka = await startKafka();
});

after(async () => {
  for (const s of sinks) await s.stop(Date.now() + 5000).catch(() => undefined);
  await kafka?.destroy();
});

for (const driver of KAFKA_DRIVERS) {
  /** A name of this driver's run (topics, committed topics, gateway ids): the broker is shared by all drivers. */
  const t = (name: string): string => `${name}-${driver}`;
  const startSink = (overrides: Record<string, unknown> = {}, gatewayId = 'gw-1'): Promise<KafkaSink> => startDriverSink(driver, overrides, t(gatewayId));

  describe(`Kafka sink, at-least-once (driver: ${driver})`, () => {
    it('produces one record per line with all ferry headers, byte-exact values, in file order', async () => {
      await kafka.createTopic(t('alo-basic'));
      const sink = await startSink({ delivery: 'at-least-once' });
      const specs: ChunkSpec[] = [
        { seq: 1, topic: t('alo-basic'), lines: ['hello', Buffer.from([0, 1, 0xff, 0xfe, 0xc3, 0x28]), ''], offsetStart: 0 },
        { seq: 2, topic: t('alo-basic'), lines: ['after', 'ünïcödé'], offsetStart: 13 },
        { seq: 3, topic: t('alo-basic'), lines: makeLines(50, 200, 'c3'), offsetStart: 26 },
      ];
      assertOk(await sink.send(specs.map(item)));
      assertRecords(await kafka.readAll(t('alo-basic'), { expect: 55 }), specs);
    });

    it('produces each chunk once when nothing fails, also when concurrent sends are batched together', async () => {
      await kafka.createTopic(t('alo-many'));
      const sink = await startSink({ delivery: 'at-least-once', lingerMs: 30 });
      const specs = Array.from({ length: 40 }, (_, i): ChunkSpec => ({ seq: i + 1, topic: t('alo-many'), lines: makeLines(20, 100, `s${i + 1}`), offsetStart: i * 2020 }));
      const results = await Promise.all(specs.map((s) => sink.send([item(s)])));
      for (const r of results) assertOk(r);
      assertRecords(await kafka.readAll(t('alo-many'), { expect: 800 }), specs);
    });

    it('adds ferry.flags only to records that have flags and keys by path when asked', async () => {
      await kafka.createTopic(t('alo-flags'));
      const sink = await startSink({ delivery: 'at-least-once', key: 'path' });
      assertOk(await sink.send([item({ seq: 1, topic: t('alo-flags'), lines: ['plain', 'cut'], flags: [0, 2], path: '/x/y.log' })]));
      const records = await kafka.readAll(t('alo-flags'), { expect: 2 });
      assert.equal(records[0]!.headers['ferry.flags'], undefined);
      assert.equal(records[1]!.headers['ferry.flags'], 'truncated');
      assert.equal(records[0]!.key?.toString(), '/x/y.log');
    });
  });

  describe(`Kafka sink, exactly-once (driver: ${driver})`, () => {
    it('commits records and the chunk markers in one transaction, visible to read_committed', async () => {
      await kafka.createTopic(t('eos-basic'));
      const sink = await startSink({ committedTopic: t('committed-basic') });
      const specs: ChunkSpec[] = [
        { seq: 1, topic: t('eos-basic'), lines: ['a', Buffer.from([0xff, 0x00, 0x0d])] },
        { seq: 2, topic: t('eos-basic'), lines: ['b'], offsetStart: 6 },
      ];
      assertOk(await sink.send(specs.map(item)));
      assertRecords(await kafka.readAll(t('eos-basic'), { expect: 3 }), specs);
      const markers = await kafka.readAll(t('committed-basic'), { expect: 2 });
      assert.deepEqual(markers.map((m) => m.key?.toString()).sort(), ['agent-1/1', 'agent-1/2']);
    });

    it('answers a chunk sent again after its commit as a duplicate and produces nothing', async () => {
      await kafka.createTopic(t('eos-dup'));
      const sink = await startSink({ committedTopic: t('committed-dup') });
      const spec: ChunkSpec = { agentId: 'dup-agent', seq: 5, topic: t('eos-dup'), lines: ['one', 'two'] };
      assertOk(await sink.send([item(spec)]));
      assertOk(await sink.send([item(spec)]), true);
      // The same chunk twice in one call: produced once, the second is a duplicate.
      const twice = await sink.send([item({ ...spec, seq: 6 }), item({ ...spec, seq: 6 })]);
      assert.deepEqual(twice, [{ kind: 'ok', duplicate: false }, { kind: 'ok', duplicate: true }]);
      const records = await kafka.readAll(t('eos-dup'), { expect: 4 });
      assert.equal(records.length, 4);
    });

    it('recognises chunks committed before a restart, and those another gateway commits while running', async () => {
      await kafka.createTopic(t('eos-restart'));
      const first = await startSink({ committedTopic: t('committed-restart') }, 'gw-a');
      const spec: ChunkSpec = { agentId: 'r-agent', seq: 1, topic: t('eos-restart'), lines: ['x', 'y', 'z'] };
      assertOk(await first.send([item(spec)]));
      await first.stop(Date.now() + 5000);

      // A new process (same gateway id): loads the committed topic at start.
      const restarted = await startSink({ committedTopic: t('committed-restart') }, 'gw-a');
      assert.equal(restarted.isCommitted('r-agent', 1), true);
      assertOk(await restarted.send([item(spec)]), true);

      // Another gateway running alongside learns of new commits through its reader.
      const other = await startSink({ committedTopic: t('committed-restart') }, 'gw-b');
      assertOk(await restarted.send([item({ ...spec, seq: 2 })]));
      await waitFor(() => other.isCommitted('r-agent', 2), 15_000, 'gateway b to read the marker of chunk 2');
      assertOk(await other.send([item({ ...spec, seq: 2 })]), true);

      const records = await kafka.readAll(t('eos-restart'), { expect: 6 });
      assert.equal(records.length, 6, 'each chunk once');
    });

    it('splits batches above 1 MB into requests Kafka accepts, in both delivery modes', async () => {
      for (const delivery of ['exactly-once', 'at-least-once'] as const) {
        const topic = t(`big-${delivery}`);
        await kafka.createTopic(topic);
        const sink = await startSink({ delivery, committedTopic: t('committed-big'), maxFlushBytes: '16MiB' });
        // 3 chunks of 1.5 MB (one call, one flush) and one chunk of 3 MB.
        const specs = [1, 2, 3].map((seq): ChunkSpec => ({ agentId: t(`big-${delivery}`), seq, topic, lines: makeLines(1500, 1000, `${delivery}-${seq}`), offsetStart: (seq - 1) * 1_501_500 }));
        specs.push({ agentId: t(`big-${delivery}`), seq: 4, topic, lines: makeLines(3000, 1000, `${delivery}-4`), offsetStart: 3 * 1_501_500 });
        assertOk(await sink.send(specs.map(item)));
        assertRecords(await kafka.readAll(topic, { expect: 7500, timeoutMs: 60_000 }), specs);
      }
    });

    it('refuses a chunk for a topic that does not exist as fatal, and still produces the others of the call', async () => {
      await kafka.createTopic(t('eos-exists'));
      const sink = await startSink({ committedTopic: t('committed-missing') });
      const [good, missing] = await sink.send([
        item({ seq: 1, agentId: 'm', topic: t('eos-exists'), lines: ['ok'] }),
        item({ seq: 2, agentId: 'm', topic: t('no-such-topic'), lines: ['lost?'] }),
      ]);
      assert.deepEqual(good, { kind: 'ok', duplicate: false });
      assert.equal(missing?.kind, 'fatal');
      assert.match(missing.kind === 'fatal' ? missing.error.message : '', /no-such-topic.*does not exist/);
      assert.equal(sink.isCommitted('m', 2), false);
      assert.equal((await kafka.readAll(t('eos-exists'), { expect: 1 })).length, 1);
    });

    it('produces a record of 1 MiB less 512 bytes with the five ferry headers, alone in its request, in both delivery modes', async () => {
      for (const delivery of ['exactly-once', 'at-least-once'] as const) {
        const topic = t(`long-${delivery}`);
        await kafka.createTopic(topic);
        const sink = await startSink({ delivery, committedTopic: t('committed-long') });
        const long = makeLines(1, 1024 * 1024 - 512, t(`long-${delivery}`))[0]!;
        const specs: ChunkSpec[] = [{ agentId: t(`long-${delivery}`), seq: 1, topic, lines: ['before', long, 'after'] }];
        assertOk(await sink.send(specs.map(item)));
        assertRecords(await kafka.readAll(topic, { expect: 3 }), specs);
      }
    });

    it("refuses a record over the topic's max.message.bytes as fatal for its chunk (fault chunk), producing the others of the call", async () => {
      await kafka.createTopic(t('eos-large'), { config: { 'max.message.bytes': '50000' } });
      const sink = await startSink({ committedTopic: t('committed-large'), maxBatchBytes: 40_000 });
      const [small, big, later] = await sink.send([
        item({ seq: 1, agentId: 'l', topic: t('eos-large'), lines: ['fine'] }),
        item({ seq: 2, agentId: 'l', topic: t('eos-large'), lines: ['a', 'x'.repeat(60_000)] }),
        item({ seq: 3, agentId: 'l', topic: t('eos-large'), lines: makeLines(100, 1000, 'later') }),
      ]);
      assert.equal(small?.kind, 'ok');
      assert.equal(later?.kind, 'ok');
      assert.equal(big?.kind, 'fatal');
      assert.equal(big.kind === 'fatal' ? big.fault : '', 'chunk');
      assert.match(big.kind === 'fatal' ? big.error.message : '', /record 1 \(file offset 2\).*too large.*max\.message\.bytes/);
      assert.equal((await kafka.readAll(t('eos-large'), { expect: 101 })).length, 101);
    });

    it("calls maxBatchBytes above the topic's max.message.bytes a setting fault, not the chunk's", async () => {
      await kafka.createTopic(t('eos-batch-limit'), { config: { 'max.message.bytes': '20000' } });
      const sink = await startSink({ committedTopic: t('committed-batch-limit'), maxBatchBytes: 100_000 });
      const [o] = await sink.send([item({ seq: 1, agentId: 'bl', topic: t('eos-batch-limit'), lines: makeLines(50, 1000, 'bl') })]);
      assert.equal(o?.kind === 'fatal' ? o.fault : o?.kind, 'setting');
    });

    it("refuses a chunk whose read time the topic's timestamp bounds refuse (INVALID_TIMESTAMP) as fatal for that chunk only", async () => {
      const strict = { 'message.timestamp.before.max.ms': '60000', 'message.timestamp.after.max.ms': '60000' };
      await kafka.createTopic(t('eos-ts'), { config: strict });
      // No clamping in the past up to a year: Kafka's bounds decide.
      const sink = await startSink({ committedTopic: t('committed-ts'), maxTimestampAgeMs: 365 * 24 * 3600 * 1000 });
      const now = Date.now();
      const outcomes = await sink.send([
        item({ seq: 1, agentId: 'ts', topic: t('eos-ts'), lines: ['now'], readAtMs: now }),
        item({ seq: 2, agentId: 'ts', topic: t('eos-ts'), lines: ['an hour ago'], readAtMs: now - 3600_000 }),
        item({ seq: 3, agentId: 'ts', topic: t('eos-ts'), lines: ['also now'], readAtMs: now }),
      ]);
      assert.deepEqual(outcomes.map((o) => (o.kind === 'fatal' ? `fatal/${o.fault}` : o.kind)), ['ok', 'fatal/chunk', 'ok']);
      assert.match(outcomes[1]?.kind === 'fatal' ? outcomes[1].error.message : '', /INVALID_TIMESTAMP/);
      assert.deepEqual((await kafka.readAll(t('eos-ts'), { expect: 2 })).map((r) => r.value.toString()), ['now', 'also now']);

      // With the default bounds, a read time 30 days old becomes the gateway's now: produced.
      const clamping = await startSink({ committedTopic: t('committed-ts') }, 'gw-ts');
      const before = Date.now();
      assertOk(await clamping.send([item({ seq: 4, agentId: 'ts', topic: t('eos-ts'), lines: ['old'], readAtMs: before - 30 * 24 * 3600_000 })]));
      const old = (await kafka.readAll(t('eos-ts'), { expect: 3 })).find((r) => r.value.toString() === 'old');
      assert.ok(old && old.timestamp >= before && old.timestamp <= Date.now(), `timestamp ${old?.timestamp} is the gateway's now`);
    });

    it('abortInFlight during a flush answers its chunks retry and ends its transaction without committing it', async () => {
      await kafka.createTopic(t('eos-abort'));
      const sink = await startSink({ committedTopic: t('committed-abort'), maxFlushBytes: '16MiB' });
      const specs = [1, 2, 3, 4].map((seq): ChunkSpec => ({ agentId: 'ab', seq, topic: t('eos-abort'), lines: makeLines(1000, 1000, `ab-${seq}`) }));
      const sent = sink.send(specs.map(item));
      await new Promise((r) => setImmediate(r));
      await sink.abortInFlight();
      assert.deepEqual((await sent).map((o) => o.kind), ['retry', 'retry', 'retry', 'retry']);
      for (const s of specs) assert.equal(sink.isCommitted('ab', s.seq), false);
      // The aborted transaction no longer holds the last stable offset: a later chunk is readable,
      // and it is the only record there.
      await waitFor(async () => (await sink.send([item({ agentId: 'ab', seq: 9, topic: t('eos-abort'), lines: ['after'] })]))[0]?.kind === 'ok', 30_000, 'a chunk after the abort to be produced');
      assert.deepEqual((await kafka.readAll(t('eos-abort'), { expect: 1 })).map((r) => r.value.toString()), ['after']);
    });

    it('answers retry while Kafka is down and produces the same chunks exactly once when it is back', async () => {
      await kafka.createTopic(t('eos-outage'));
      const sink = await startSink({ committedTopic: t('committed-outage'), requestTimeoutMs: 3000 });
      const before = { agentId: 'o', seq: 1, topic: t('eos-outage'), lines: ['before'] };
      assertOk(await sink.send([item(before)]));
      await kafka.stop();
      const during: ChunkSpec[] = [2, 3].map((seq) => ({ agentId: 'o', seq, topic: t('eos-outage'), lines: [`during-${seq}`, 'more'] }));
      const outcomes = await sink.send(during.map(item));
      for (const o of outcomes) assert.equal(o.kind, 'retry');
      assert.equal(sink.health().ready, false);
      await kafka.start();
      // The caller owns retries: send again until Kafka takes them.
      await waitFor(
        async () => {
          const again = await sink.send(during.map(item));
          return again.every((o) => o.kind === 'ok');
        },
        60_000,
        'the sink to produce again after Kafka restarted',
      );
      assertOk(await sink.send(during.map(item)), true);
      const records = await kafka.readAll(t('eos-outage'), { expect: 5 });
      assert.deepEqual(records.map((r) => r.value.toString()), ['before', 'during-2', 'more', 'during-3', 'more']);
      assert.equal(sink.health().ready, true);
    });
  });

  describe(`Kafka sink, produce-API records (keys, headers, partitions) (driver: ${driver})`, () => {
    const threePartitions: PartitionMetadata[] = [0, 1, 2].map((partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 1, replicas: [1], isr: [1], offlineReplicas: [] }));
    /** The partition kafkajs' default partitioner (and a Java producer) picks for a key. */
    const keyPartition = (key: Buffer): number => Partitioners.DefaultPartitioner()({ topic: 'x', partitionMetadata: threePartitions, message: { key, value: null } });
    let seq = 1;
    const recordsItem = (topic: string, records: SinkRecord[], id = seq++): SinkChunk => ({ chunk: syntheticChunk('rest.gw-1', id, 'client', topic, records), source: 'client', records });

    it('produces records with exactly their keys, headers and explicit partitions, alongside file chunks of the same call, in both delivery modes', async () => {
      for (const delivery of ['exactly-once', 'at-least-once'] as const) {
        const topic = t(`rec-${delivery}`);
        await kafka.createTopic(topic, { partitions: 3 });
        const sink = await startSink({ delivery, committedTopic: t('committed-rec') });
        assert.equal(sink.acceptsRecords, true);
        const userKey = Buffer.from('user-42');
        const records: SinkRecord[] = [
          { key: Buffer.from('order-7'), value: Buffer.from('{"n":1}'), headers: { trace: Buffer.from('t-1'), bin: Buffer.from([0, 0xff, 0x80]) }, partition: 2 },
          { key: userKey, value: Buffer.from('keyed'), headers: { 'content-type': Buffer.from('text/plain') } },
          { key: null, value: Buffer.from([0xc3, 0x28, 0x00]), partition: 0 },
          { key: null, value: Buffer.from('unkeyed') },
        ];
        const file: ChunkSpec = { agentId: `file-${delivery}`, seq: 1, topic, lines: ['from a file'] };
        const rest = recordsItem(topic, records);
        assertOk(await sink.send([rest, item(file)]));

        const got = await kafka.readAll(topic, { expect: 5 });
        assert.equal(got.length, 5, 'each record once');
        const byValue = new Map(got.map((r) => [r.value.toString('hex'), r]));
        const find = (v: Buffer) => {
          const r = byValue.get(v.toString('hex'));
          assert.ok(r, `record ${v.toString('hex')} is in Kafka`);
          return r;
        };
        const a = find(records[0]!.value);
        assert.equal(a.partition, 2);
        assert.equal(a.key?.toString(), 'order-7');
        assert.deepEqual(a.rawHeaders, [['trace', Buffer.from('t-1')], ['bin', Buffer.from([0, 0xff, 0x80])]], 'exactly its headers, bytes untouched, nothing added');
        const b = find(records[1]!.value);
        assert.equal(b.partition, keyPartition(userKey), 'a keyed record goes where the default partitioner puts its key');
        assert.deepEqual(b.key, userKey);
        assert.deepEqual(b.rawHeaders, [['content-type', Buffer.from('text/plain')]]);
        const c = find(records[2]!.value);
        assert.equal(c.partition, 0);
        assert.equal(c.key, null);
        assert.deepEqual(c.rawHeaders, []);
        const d = find(records[3]!.value);
        assert.equal(d.key, null);
        assert.deepEqual(d.rawHeaders, []);
        const f = find(Buffer.from('from a file'));
        assert.equal(f.headers['ferry.agent'], `file-${delivery}`, 'file chunks keep their ferry headers');

        if (delivery === 'exactly-once') {
          const h = rest.chunk.header;
          assert.equal(sink.isCommitted(h.agentId, h.seq), false, 'records are not added to the committed set');
          assert.equal(sink.isCommitted(file.agentId!, 1), true);
          const markers = await kafka.readAll(t('committed-rec'), { expect: 1 });
          assert.deepEqual(markers.map((m) => m.key?.toString()), [`file-${delivery}/1`], 'a marker for the file chunk only');
          // Not deduplicated: the same request sent again is produced again (at-least-once).
          assertOk(await sink.send([recordsItem(topic, records, h.seq)]));
          assert.equal((await kafka.readAll(topic, { expect: 9 })).length, 9);
        }
      }
    });

    it('refuses a partition the topic does not have as fatal, producing nothing of that request, and accepts it once the partition exists', async () => {
      const topic = t('rec-range');
      await kafka.createTopic(topic, { partitions: 2 });
      const sink = await startSink({ committedTopic: t('committed-rec-range') });
      const bad: SinkRecord[] = [
        { key: null, value: Buffer.from('fine'), partition: 1 },
        { key: null, value: Buffer.from('too far'), partition: 2 },
      ];
      const [good, refused] = await sink.send([recordsItem(topic, [{ key: Buffer.from('k'), value: Buffer.from('good') }]), recordsItem(topic, bad)]);
      assert.deepEqual(good, { kind: 'ok', duplicate: false });
      assert.equal(refused?.kind, 'fatal');
      assert.equal(refused.kind === 'fatal' ? refused.error.message : '', `records[1].partition 2 is out of range: topic "${topic}" has 2 partitions (0-1)`);
      assert.deepEqual((await kafka.readAll(topic, { expect: 1 })).map((r) => r.value.toString()), ['good']);

      // Partitions added later are seen (the count is looked up again).
      const admin = kafka.client().admin();
      await admin.connect();
      try {
        await admin.createPartitions({ topicPartitions: [{ topic, count: 3 }] });
      } finally {
        await admin.disconnect();
      }
      await waitFor(
        async () => (await sink.send([recordsItem(topic, bad)]))[0]?.kind === 'ok',
        30_000,
        'the sink to accept partition 2 after the topic grew to 3 partitions',
      );
      const got = await kafka.readAll(topic, { expect: 3 });
      assert.deepEqual(
        got.filter((r) => r.value.toString() !== 'good').map((r) => [r.value.toString(), r.partition]),
        [['fine', 1], ['too far', 2]],
      );
    });
  });
}
