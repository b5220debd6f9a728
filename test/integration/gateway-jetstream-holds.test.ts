// JetStreamInput + the real Kafka sink, a real nats-server and a real Kafka broker: a chunk a
// setting refuses (its topic does not exist yet) is held, not dead-lettered, while other agents
// flow; and a chunk claiming another agent's identity is dead-lettered, not produced, so the
// genuine chunk still arrives.
import { describe, it, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { startKafka, startNats, waitFor, type KafkaBroker, type NatsServer } from '../harness/index.js';
import { gatewayConfigSchema, type GatewayConfig } from '../../gateway/config.js';
import { createKafkaSink, type KafkaSink } from '../../gateway/sinks/kafka/sink.js';
import { JetStreamInput } from '../../gateway/inputs/jetstream/input.js';
import { createRegistry } from '../../shared/metrics.js';
import { silentLogger } from '../../shared/log.js';
import { encodeTestChunk } from '../unit/gateway/sinks/fixtures.js';

let kafka: KafkaBroker;
let nats: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let n = 0;
let running: Array<{ input: JetStreamInput; sink: KafkaSink }> = [];

type Config = Readonly<GatewayConfig>;

function config(natsOverrides: Record<string, unknown> = {}): Config {
  n++;
  return gatewayConfigSchema.parse({
    kafka: { brokers: kafka.brokers, committedTopic: `committed-h${n}`, requestTimeoutMs: 5000, lingerMs: 5 },
    nats: { servers: [nats.url], stream: `H${n}`, subjectPrefix: `hchunks${n}`, consumer: `hc${n}`, deadLetterSubject: `hdead${n}`, deadLetterStream: `HDEAD${n}`, ...natsOverrides },
  });
}

async function startGateway(c: Config): Promise<JetStreamInput> {
  const registry = createRegistry({ defaultMetrics: false });
  const sink = createKafkaSink(c.kafka, { gatewayId: `gw-h${n}`, log: silentLogger(), registry });
  await sink.start();
  const input = new JetStreamInput({ config: c.nats!, sink, log: silentLogger(), registry });
  await input.start();
  running.push({ input, sink });
  return input;
}

async function publishAs(c: Config, subjectAgent: string, msgId: string, chunk: { agentId: string; seq: number; topic: string; line: string }): Promise<{ duplicate: boolean }> {
  const buf = encodeTestChunk({ agentId: chunk.agentId, seq: chunk.seq, topic: chunk.topic, lines: [chunk.line] });
  return js.publish(`${c.nats!.subjectPrefix}.${subjectAgent}`, buf, { msgID: msgId });
}

async function deadReasons(c: Config): Promise<string[]> {
  const info = await jsm.streams.info(c.nats!.deadLetterStream);
  const out: string[] = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    out.push((await jsm.streams.getMessage(c.nats!.deadLetterStream, { seq }))!.header.get('Ferry-Dead-Reason'));
  }
  return out;
}

before(async () => {
  [kafka, nats] = await Promise.all([startKafka(), startNats()]);
  nc = await connect({ servers: nats.url });
  js = jetstream(nc);
  jsm = await jetstreamManager(nc);
});

afterEach(async () => {
  for (const gw of running) {
    await gw.input.stop(Date.now() + 3000);
    await gw.sink.stop(Date.now() + 3000);
  }
  running = [];
});

after(async () => {
  await nc?.close();
  await nats?.stop();
  await kafka?.destroy();
});

describe('JetStream to Kafka: holds and identity', () => {
  it('holds an agent whose topic does not exist yet (never dead-lettered) while other agents flow, and produces its chunks in order once the topic is created', async () => {
    await kafka.createTopic('h-present');
    const c = config({ holdRetryMaxMs: 2000 });
    const input = await startGateway(c);
    for (let seq = 1; seq <= 3; seq++) await publishAs(c, 'early', `early/${seq}`, { agentId: 'early', seq, topic: 'h-later', line: `early ${seq}` });
    await publishAs(c, 'other', 'other/1', { agentId: 'other', seq: 1, topic: 'h-present', line: 'other 1' });
    const flowing = await kafka.readAll('h-present', { expect: 1, timeoutMs: 30_000 });
    assert.deepEqual(flowing.map((r) => r.value.toString()), ['other 1']);
    await waitFor(() => /holding 1 agent\(s\).*early \(3 chunks/.test(input.health().detail), 20_000, 'readiness to name the held agent');
    assert.deepEqual(await deadReasons(c), [], 'nothing dead-lettered');
    await kafka.createTopic('h-later');
    const held = await kafka.readAll('h-later', { expect: 3, timeoutMs: 60_000 });
    assert.deepEqual(held.map((r) => r.value.toString()), ['early 1', 'early 2', 'early 3']);
    await waitFor(async () => (await jsm.streams.info(c.nats!.stream)).state.messages === 0, 20_000, 'every message acked');
    assert.doesNotMatch(input.health().detail, /holding/);
  });

  it('dead-letters a chunk agent evil publishes under agent victim\'s identity, and the genuine victim chunk still reaches Kafka (exactly-once)', async () => {
    await kafka.createTopic('h-victim');
    const c = config({ duplicateWindowMs: 1000 });
    await startGateway(c);
    // evil, on its own subject, claims victim/7: under evil's Nats-Msg-Id, then under victim's.
    await publishAs(c, 'evil', 'evil/7', { agentId: 'victim', seq: 7, topic: 'h-victim', line: 'forged a' });
    await publishAs(c, 'evil', 'victim/7', { agentId: 'victim', seq: 7, topic: 'h-victim', line: 'forged b' });
    await waitFor(async () => (await deadReasons(c)).length === 2, 20_000, 'both forgeries dead-lettered');
    assert.deepEqual(await deadReasons(c), ['identity', 'identity']);
    // JetStream's duplicate window is stream-wide by Nats-Msg-Id: the genuine victim/7 would be
    // dropped by JetStream itself inside it (see the report); past it, the gateway must not
    // have committed the forged id.
    await new Promise((r) => setTimeout(r, 1200));
    const ack = await publishAs(c, 'victim', 'victim/7', { agentId: 'victim', seq: 7, topic: 'h-victim', line: 'genuine' });
    assert.equal(ack.duplicate, false);
    const records = await kafka.readAll('h-victim', { expect: 1, timeoutMs: 30_000 });
    assert.deepEqual(records.map((r) => [r.value.toString(), r.headers['ferry.agent'], r.headers['ferry.seq']]), [['genuine', 'victim', '7']]);
  });
});
