// JetStream -> gateway (JetStreamInput + Kafka sink) -> Kafka, with a real nats-server and a real
// Kafka broker (one of each for the whole file); the tests run once per Kafka driver.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { KAFKA_DRIVERS, startKafka, startNats, waitFor, withDriver, type KafkaBroker, type KafkaDriverName, type KafkaRecordOut, type NatsServer } from '../harness/index.js';
import { gatewayConfigSchema, type GatewayConfig } from '../../gateway/config.js';
import { createKafkaSink, type KafkaSink } from '../../gateway/sinks/kafka/sink.js';
import { JetStreamInput } from '../../gateway/inputs/jetstream/input.js';
import { ensureJetStream } from '../../gateway/inputs/jetstream/setup.js';
import type { Sink, SinkChunk, SinkOutcome } from '../../gateway/sinks/sink.js';
import { createRegistry, type Registry } from '../../shared/metrics.js';
import { silentLogger } from '../../shared/log.js';
import { encodeTestChunk, lineOffsets, makeLines, type ChunkSpec } from '../unit/gateway/sinks/fixtures.js';
import { chunkDigest, chunkMsgId } from '../../shared/protocol.js';

let kafka: KafkaBroker;
let nats: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let n = 0;

interface Gateway {
  input: JetStreamInput;
  sink: KafkaSink;
  registry: Registry;
}
let running: Gateway[] = [];

type Config = Readonly<GatewayConfig>;

/** A gateway config with streams, consumer and committed topic of its own. */
function gatewayConfig(driver: KafkaDriverName, kafkaOverrides: Record<string, unknown>, natsOverrides: Record<string, unknown>): Config {
  n++;
  return gatewayConfigSchema.parse({
    kafka: withDriver({ brokers: kafka.brokers, committedTopic: `committed-${n}`, requestTimeoutMs: 5000, ...kafkaOverrides }, driver),
    nats: { servers: [nats.url], stream: `S${n}`, subjectPrefix: `chunks${n}`, consumer: `c${n}`, deadLetterSubject: `dead${n}`, deadLetterStream: `DEAD${n}`, ...natsOverrides },
  });
}

/** Starts a gateway (its id suffixed with the driver: the broker is shared by all drivers). */
async function startGateway(c: Config, gatewayId: string, wrap?: (s: Sink) => Sink): Promise<Gateway> {
  const registry = createRegistry({ defaultMetrics: false });
  const sink = createKafkaSink(c.kafka, { gatewayId: `${gatewayId}-${c.kafka.driver}`, log: silentLogger(), registry });
  await sink.start();
  const input = new JetStreamInput({ config: c.nats!, sink: wrap ? wrap(sink) : sink, log: silentLogger(), registry });
  await input.start();
  const gw = { input, sink, registry };
  running.push(gw);
  return gw;
}

async function stopGateway(gw: Gateway): Promise<void> {
  running = running.filter((g) => g !== gw);
  await gw.input.stop(Date.now() + 3000);
  await gw.sink.stop(Date.now() + 3000);
}

async function publish(c: Config, spec: ChunkSpec): Promise<void> {
  const agentId = spec.agentId ?? 'agent-1';
  const bytes = encodeTestChunk(spec);
  // as the agent does (shared/protocol.ts chunkMsgId)
  await js.publish(`${c.nats!.subjectPrefix}.${agentId}`, bytes, { msgID: chunkMsgId(agentId, spec.seq, bytes) });
}

/** `count` chunks of `lines` lines each from one file, consecutive. */
function fileChunks(topic: string, count: number, lines: number, size: number, agentId = 'agent-1'): ChunkSpec[] {
  const out: ChunkSpec[] = [];
  let offset = 0;
  for (let seq = 1; seq <= count; seq++) {
    const ls = makeLines(lines, size, `${agentId}-${seq}`);
    out.push({ agentId, seq, topic, lines: ls, offsetStart: offset });
    for (const l of ls) offset += l.length + 1;
  }
  return out;
}

function assertExactly(records: KafkaRecordOut[], specs: ChunkSpec[]): void {
  const want = specs.flatMap((s) => {
    const offsets = lineOffsets(s.lines, s.offsetStart ?? 0);
    return s.lines.map((l, i) => ({ s, line: l as Buffer, offset: offsets[i]! }));
  });
  assert.equal(records.length, want.length, 'each line exactly once');
  for (const [i, r] of records.entries()) {
    const w = want[i]!;
    assert.ok(r.value.equals(w.line), `record ${i} byte-exact, in file order`);
    assert.equal(r.headers['ferry.agent'], w.s.agentId ?? 'agent-1');
    assert.equal(r.headers['ferry.host'], 'host-1');
    assert.equal(r.headers['ferry.path'], '/var/log/app.log');
    assert.equal(r.headers['ferry.offset'], String(w.offset));
    assert.equal(r.headers['ferry.seq'], String(w.s.seq));
  }
}

async function metricValue(registry: Registry, name: string): Promise<number> {
  const m = await registry.getSingleMetric(name)?.get();
  return (m?.values ?? []).reduce((a, v) => a + v.value, 0);
}

async function streamMessages(c: Config): Promise<number> {
  return (await jsm.streams.info(c.nats!.stream)).state.messages;
}

before(async () => {
  [kafka, nats] = await Promise.all([startKafka(), startNats()]);
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});

afterEach(async () => {
  for (const gw of [...running]) await stopGateway(gw);
});

after(async () => {
  await nc?.close();
  await nats?.stop();
  await kafka?.destroy();
});

for (const driver of KAFKA_DRIVERS) {
  /** A topic of this driver's run: the broker is shared by all drivers. */
  const t = (name: string): string => `${name}-${driver}`;
  const config = (kafkaOverrides: Record<string, unknown> = {}, natsOverrides: Record<string, unknown> = {}): Config => gatewayConfig(driver, kafkaOverrides, natsOverrides);

  describe(`JetStream to Kafka (driver: ${driver})`, () => {
    for (const delivery of ['exactly-once', 'at-least-once'] as const) {
      it(`delivers every line once, byte-exact with all headers and in file order (${delivery})`, async () => {
        const topic = t(`rt-${delivery}`);
        await kafka.createTopic(topic);
        const c = config({ delivery });
        await startGateway(c, 'gw-1');
        // 40 small chunks, then 3 chunks of ~900 KB: one flush is well above 1 MB.
        const specs = [...fileChunks(topic, 40, 25, 200), ...fileChunks(topic, 3, 900, 1000, 'agent-big')];
        for (const s of specs) await publish(c, s);
        const records = await kafka.readAll(topic, { expect: 40 * 25 + 3 * 900, timeoutMs: 60_000 });
        const small = records.filter((r) => r.headers['ferry.agent'] === 'agent-1');
        const big = records.filter((r) => r.headers['ferry.agent'] === 'agent-big');
        assertExactly(small, specs.slice(0, 40));
        assertExactly(big, specs.slice(40));
        await waitFor(async () => (await streamMessages(c)) === 0, 10_000, 'every message acked');
      });
    }

    it('exactly-once: a chunk committed but never acked (gateway gone) is redelivered and not produced again', async () => {
      const topic = t('redeliver');
      await kafka.createTopic(topic);
      const c = config({}, { ackWaitMs: 30_000 });
      // Gateway A commits to Kafka, then never answers its input: like a kill after the commit.
      let produced = 0;
      const hangAfterProduce = (real: Sink): Sink => ({
        start: () => real.start(),
        stop: (d) => real.stop(d),
        health: () => real.health(),
        send: async (chunks: readonly SinkChunk[]): Promise<SinkOutcome[]> => {
          await real.send(chunks);
          produced += chunks.length;
          return new Promise<SinkOutcome[]>(() => undefined);
        },
      });
      // Published before A starts; A commits its first batch, the rest wait in its queue.
      await ensureJetStream(jsm, c.nats!, silentLogger());
      const specs = fileChunks(topic, 5, 10, 100);
      for (const s of specs) await publish(c, s);
      const a = await startGateway(c, 'gw-a', hangAfterProduce);
      await waitFor(() => produced >= 1, 20_000, 'gateway A to commit its first batch');
      // A goes away without acking: its messages return to JetStream.
      await stopGateway(a);
      const b = await startGateway(c, 'gw-b');
      await waitFor(async () => (await streamMessages(c)) === 0, 30_000, 'gateway B to ack the redelivered chunks');
      assert.ok((await metricValue(b.registry, 'ferry_gateway_jetstream_redeliveries_total')) >= 1, 'B got redeliveries');
      assert.equal(await metricValue(b.registry, 'ferry_gateway_kafka_duplicate_chunks_total'), produced, 'B recognised what A committed');
      assertExactly(await kafka.readAll(topic, { expect: 50 }), specs);
    });

    it('two inputs sharing the durable consumer produce every chunk exactly once in total (at-least-once mode)', async () => {
      const topic = t('shared');
      await kafka.createTopic(topic);
      const c = config({ delivery: 'at-least-once' }, { fetchBatch: 8 });
      const g1 = await startGateway(c, 'gw-1');
      const g2 = await startGateway(c, 'gw-2');
      const specs = fileChunks(topic, 200, 5, 100);
      for (const s of specs) await publish(c, s);
      const records = await kafka.readAll(topic, { expect: 1000, timeoutMs: 60_000 });
      assert.equal(records.length, 1000);
      const ids = new Set(records.map((r) => `${r.headers['ferry.seq']}@${r.headers['ferry.offset']}`));
      assert.equal(ids.size, 1000, 'no line twice');
      await waitFor(async () => (await streamMessages(c)) === 0, 10_000, 'every message acked');
      const acked1 = await metricValue(g1.registry, 'ferry_gateway_jetstream_acked_chunks_total');
      const acked2 = await metricValue(g2.registry, 'ferry_gateway_jetstream_acked_chunks_total');
      assert.equal(acked1 + acked2, 200);
    });

    it('while Kafka is down the backlog waits in JetStream, and drains once Kafka is back with nothing lost or doubled', async () => {
      const topic = t('outage');
      await kafka.createTopic(topic);
      const c = config({ requestTimeoutMs: 3000 });
      const gw = await startGateway(c, 'gw-1');
      const specs = fileChunks(topic, 60, 10, 150);
      for (const s of specs.slice(0, 10)) await publish(c, s);
      await waitFor(async () => (await streamMessages(c)) === 0, 20_000, 'the first chunks delivered');
      await kafka.stop();
      for (const s of specs.slice(10)) await publish(c, s);
      await waitFor(() => /holding/.test(gw.input.health().detail), 30_000, 'the input to hold chunks Kafka cannot take');
      assert.ok((await streamMessages(c)) >= 50, 'the backlog stays in JetStream');
      await kafka.start();
      await waitFor(async () => (await streamMessages(c)) === 0, 90_000, 'the backlog to drain');
      assertExactly(await kafka.readAll(topic, { expect: 600, timeoutMs: 30_000 }), specs);
    });

    it('dead-letters a malformed chunk and keeps delivering the rest', async () => {
      const topic = t('dlq');
      await kafka.createTopic(topic);
      const c = config();
      await startGateway(c, 'gw-1');
      const specs = fileChunks(topic, 3, 4, 50);
      await publish(c, specs[0]!);
      await js.publish(`${c.nats!.subjectPrefix}.agent-1`, Buffer.from('not a chunk at all'), { msgID: 'agent-1/bad' });
      await publish(c, specs[1]!);
      await publish(c, specs[2]!);
      assertExactly(await kafka.readAll(topic, { expect: 12 }), specs);
      await waitFor(async () => (await jsm.streams.info(c.nats!.deadLetterStream)).state.messages === 1, 10_000, 'one dead letter');
    });

    it('holds chunks for a topic outside nats.allowTopics (a setting the operator may change): nothing produced, nothing dead-lettered, other agents flow', async () => {
      await kafka.createTopic(t('open'));
      await kafka.createTopic(t('closed'));
      const c = config({}, { allowTopics: [t('open')] });
      const gw = await startGateway(c, 'gw-1');
      const closed = fileChunks(t('closed'), 1, 3, 20);
      const open = fileChunks(t('open'), 1, 3, 20, 'agent-2');
      await publish(c, closed[0]!);
      await publish(c, open[0]!);
      assertExactly(await kafka.readAll(t('open'), { expect: 3 }), open);
      await waitFor(() => /holding 1 agent\(s\).*agent-1.*nats\.allowTopics/.test(gw.input.health().detail), 10_000, 'the held agent in readiness');
      assert.equal((await jsm.streams.info(c.nats!.deadLetterStream)).state.messages, 0);
      assert.equal((await kafka.readAll(t('closed'))).length, 0);
    });

    it('holds an agent whose topic does not exist yet (never dead-lettered) while other agents flow, and produces its chunks in order once the topic is created', async () => {
      await kafka.createTopic(t('h-present'));
      const c = config({}, { holdRetryMaxMs: 2000 });
      const gw = await startGateway(c, 'gw-1');
      const early = fileChunks(t('h-later'), 3, 2, 30, 'early');
      const other = fileChunks(t('h-present'), 1, 2, 30, 'other');
      for (const s of early) await publish(c, s);
      await publish(c, other[0]!);
      assertExactly(await kafka.readAll(t('h-present'), { expect: 2, timeoutMs: 30_000 }), other);
      await waitFor(() => /holding 1 agent\(s\).*early \(3 chunks/.test(gw.input.health().detail), 20_000, 'readiness to name the held agent');
      assert.equal((await jsm.streams.info(c.nats!.deadLetterStream)).state.messages, 0, 'nothing dead-lettered');
      await kafka.createTopic(t('h-later'));
      assertExactly(await kafka.readAll(t('h-later'), { expect: 6, timeoutMs: 60_000 }), early);
      await waitFor(async () => (await streamMessages(c)) === 0, 20_000, 'every message acked');
      assert.doesNotMatch(gw.input.health().detail, /holding/);
    });

    it('dead-letters a chunk agent evil publishes under agent victim\'s identity, and the genuine victim chunk published right after still reaches Kafka (exactly-once)', async () => {
      const topic = t('h-victim');
      await kafka.createTopic(topic);
      // the default duplicate window (2 min): JetStream deduplicates Nats-Msg-Ids stream-wide in it
      const c = config();
      await startGateway(c, 'gw-1');
      const forged: ChunkSpec = { agentId: 'victim', seq: 1, topic, lines: ['forged by evil'] };
      const forgedBytes = encodeTestChunk(forged);
      const evil = `${c.nats!.subjectPrefix}.evil`;
      // evil, on its own subject, claims victim/1: under its own Nats-Msg-Id, under victim's plain
      // chunk id, and under victim's id with a digest (of its own bytes: it cannot know victim's).
      await js.publish(evil, forgedBytes, { msgID: 'evil/1' });
      await js.publish(evil, forgedBytes, { msgID: 'victim/1' });
      await js.publish(evil, forgedBytes, { msgID: `victim/1/${chunkDigest(forgedBytes)}` });
      await waitFor(async () => (await jsm.streams.info(c.nats!.deadLetterStream)).state.messages === 3, 20_000, 'the forgeries dead-lettered');
      const dead = await jsm.streams.getMessage(c.nats!.deadLetterStream, { last_by_subj: c.nats!.deadLetterSubject });
      assert.equal(dead!.header.get('Ferry-Dead-Reason'), 'identity');
      // Inside the duplicate window: the genuine chunk's id carries the digest of its own bytes, so
      // JetStream does not take it for one of the forgeries, and the gateway produces it.
      const genuine = fileChunks(topic, 1, 2, 20, 'victim');
      await publish(c, genuine[0]!);
      assertExactly(await kafka.readAll(topic, { expect: 2, timeoutMs: 30_000 }), genuine);
    });
  });
}
