// Dead letters and stream safety with a real nats-server and a real Kafka broker: the JetStream
// input dead-letters chunks into FERRY_DEAD, `dead-letters list` shows them, `replay` produces
// them into Kafka exactly once (also when run twice) and removes them; the dead-letter stream is
// bounded and counts what its limits discarded; a chunk stream with settings that delete
// PubAcked chunks (max_age) is refused, or reset when the gateway created it. What produces to
// Kafka (the input and replay) runs once per Kafka driver.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstream, jetstreamManager, RetentionPolicy, StorageType, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { KAFKA_DRIVERS, startKafka, startNats, waitFor, withDriver, type KafkaBroker, type KafkaDriverName, type NatsServer } from '../harness/index.js';
import { gatewayConfigSchema, type GatewayConfig } from '../../gateway/config.js';
import { createKafkaSink } from '../../gateway/sinks/kafka/sink.js';
import { JetStreamInput } from '../../gateway/inputs/jetstream/input.js';
import { ensureJetStream } from '../../gateway/inputs/jetstream/setup.js';
import { runDeadLetters, type DeadLettersArgs } from '../../gateway/deadletters/command.js';
import type { DeadLetter } from '../../gateway/deadletters/deadletter.js';
import type { ReplayResult } from '../../gateway/deadletters/replay.js';
import { StreamUnsafeError } from '../../shared/errors.js';
import { createRegistry } from '../../shared/metrics.js';
import { silentLogger } from '../../shared/log.js';
import { encodeTestChunk } from '../unit/gateway/sinks/fixtures.js';
import { deadLetterHeaders } from '../unit/gateway/deadletters/fixtures.js';

let kafka: KafkaBroker;
let nats: NatsServer;
let nc: NatsConnection;
let js: JetStreamClient;
let jsm: JetStreamManager;
let n = 0;

type Config = Readonly<GatewayConfig>;

/** A gateway config with an id, streams, consumer and committed topic of its own. */
function config(natsOverrides: Record<string, unknown> = {}, driver?: KafkaDriverName): Config {
  n++;
  const kafkaConfig = { brokers: kafka.brokers, committedTopic: `committed-${n}`, requestTimeoutMs: 5000, lingerMs: 5 };
  return gatewayConfigSchema.parse({
    id: `gw-${n}`,
    kafka: driver === undefined ? kafkaConfig : withDriver(kafkaConfig, driver),
    nats: { servers: [nats.url], stream: `S${n}`, subjectPrefix: `chunks${n}`, consumer: `c${n}`, deadLetterSubject: `dead${n}`, deadLetterStream: `DEAD${n}`, ...natsOverrides },
  });
}

/** [msgId, outcome] per result, in msgId order (results are reported as they settle). */
function outcomes(out: ReplayOut): Array<[string | null, string]> {
  return out.results.map((r): [string | null, string] => [r.msgId, r.outcome]).sort((x, y) => String(x[0]).localeCompare(String(y[0])));
}

/** Runs the command, returning its exit code and its (JSON) output. */
async function run<T>(c: Config, args: DeadLettersArgs): Promise<{ code: number; out: T }> {
  let text = '';
  const code = await runDeadLetters(c, args, { write: (s: string) => (text += s) });
  return { code, out: JSON.parse(text) as T };
}

interface ListOut {
  messages: number;
  replayed: number;
  discarded: number;
  deadLetters: DeadLetter[];
}
interface ReplayOut {
  results: ReplayResult[];
  replayed: number;
  duplicate: number;
  kept: number;
  missing: number;
}

async function plant(c: Config, agentId: string, seq: number, topic: string, lines: string[]): Promise<void> {
  const data = encodeTestChunk({ agentId, seq, topic, lines });
  const headers = deadLetterHeaders({ reason: 'refused', error: 'Kafka refused: record too large', msgId: `${agentId}/${seq}`, subject: `${c.nats!.subjectPrefix}.${agentId}`, stream: c.nats!.stream, streamSeq: seq });
  await js.publish(c.nats!.deadLetterSubject, data, { headers });
}

describe('dead letters and JetStream stream safety (real NATS and Kafka)', () => {
  before(async () => {
    [kafka, nats] = await Promise.all([startKafka(), startNats({ jetstream: true })]);
    nc = await connect({ servers: nats.url });
    js = jetstream(nc);
    jsm = await jetstreamManager(nc);
  });

  after(async () => {
    await nc?.close();
    await Promise.all([kafka?.destroy(), nats?.stop()]);
  });

  for (const driver of KAFKA_DRIVERS) {
    describe(`replay (driver: ${driver})`, () => {
      it('lists what the JetStream input dead-lettered, replays it into Kafka exactly once (also twice), removes it, and never replays a forgery', async () => {
        const [topicA, topicB] = [`dl-a-${driver}`, `dl-b-${driver}`];
        await kafka.createTopic(topicA);
        await kafka.createTopic(topicB);
        // The real input dead-letters a malformed chunk and one that claims another agent's identity.
        const strict = config({ allowTopics: [topicA] }, driver);
        const registry = createRegistry({ defaultMetrics: false });
        const sink = createKafkaSink(strict.kafka, { gatewayId: `gw-input-${driver}`, log: silentLogger(), registry });
        await sink.start();
        const input = new JetStreamInput({ config: strict.nats!, sink, log: silentLogger(), registry });
        await input.start();
        try {
          await js.publish(`${strict.nats!.subjectPrefix}.agent-1`, Buffer.from('FRYC not really a chunk'), { msgID: 'agent-1/2' });
          await js.publish(`${strict.nats!.subjectPrefix}.evil`, encodeTestChunk({ agentId: 'agent-1', seq: 5, topic: topicA, lines: ['forged'] }), { msgID: 'agent-1/5' });
          await waitFor(async () => (await jsm.streams.info(strict.nats!.deadLetterStream)).state.messages === 2, 15_000, 'two dead letters from the input');
        } finally {
          await input.stop(Date.now() + 3000);
          await sink.stop(Date.now() + 3000);
        }
        // Three more, planted as the input writes them (Kafka refused them), one for topicB.
        await plant(strict, 'agent-1', 1, topicB, ['b-1', 'b-2']);
        await plant(strict, 'agent-1', 3, topicA, ['a-3-1', 'a-3-2']);
        await plant(strict, 'agent-1', 4, topicA, ['a-4-1']);

        const listed = await run<ListOut>(strict, { action: 'list', json: true });
        assert.equal(listed.code, 0);
        assert.equal(listed.out.messages, 5);
        const byId = new Map(listed.out.deadLetters.map((d) => [d.msgId, d]));
        assert.deepEqual([...byId.keys()], ['agent-1/2', 'agent-1/5', 'agent-1/1', 'agent-1/3', 'agent-1/4']);
        const forged = byId.get('agent-1/5')!;
        assert.equal(forged.reason, 'identity');
        assert.match(forged.error!, /claims agent "agent-1" but was published on/);
        assert.equal(forged.subject, `${strict.nats!.subjectPrefix}.evil`);
        assert.equal(forged.topic, topicA);
        assert.equal(forged.agentId, 'agent-1');
        assert.equal(forged.chunkSeq, 5);
        assert.equal(forged.originalStream, strict.nats!.stream);
        assert.equal(forged.replayable, false);
        assert.ok(forged.bytes > 0 && !Number.isNaN(Date.parse(forged.time)));
        const malformed = byId.get('agent-1/2')!;
        assert.equal(malformed.reason, 'malformed');
        assert.equal(malformed.replayable, false);
        assert.equal(malformed.chunkSeq, 2, 'agent/seq from the Nats-Msg-Id when the chunk does not decode');
        assert.equal(byId.get('agent-1/3')!.reason, 'refused');

        // topicB is not allowed yet: replaying everything keeps it, with the reason.
        const early = await run<ReplayOut>(strict, { action: 'replay', json: true, seqs: [byId.get('agent-1/1')!.seq] });
        assert.equal(early.code, 1);
        assert.deepEqual(outcomes(early.out), [['agent-1/1', 'kept']]);
        assert.match(early.out.results[0]!.detail!, /not allowed by nats.allowTopics/);

        // The operator allowed topicB meanwhile: replay one by sequence, then all.
        const relaxed = { ...strict, nats: { ...strict.nats!, allowTopics: ['dl-*'] } };
        const one = await run<ReplayOut>(relaxed, { action: 'replay', json: true, seqs: [byId.get('agent-1/3')!.seq] });
        assert.equal(one.code, 0);
        assert.deepEqual(outcomes(one.out), [['agent-1/3', 'replayed']]);

        const all = await run<ReplayOut>(relaxed, { action: 'replay', json: true, seqs: 'all' });
        assert.equal(all.code, 1, 'exit 1: the malformed one and the forgery are kept');
        assert.deepEqual(outcomes(all.out), [
          ['agent-1/1', 'replayed'],
          ['agent-1/2', 'kept'],
          ['agent-1/4', 'replayed'],
          ['agent-1/5', 'kept'],
        ]);
        assert.match(all.out.results.find((r) => r.msgId === 'agent-1/2')!.detail!, /cannot be replayed/);
        assert.match(all.out.results.find((r) => r.msgId === 'agent-1/5')!.detail!, /cannot be replayed: it claims another agent's identity/);

        // agent-1/3 again (as if its removal had been lost): the committed set drops it.
        await plant(strict, 'agent-1', 3, topicA, ['a-3-1', 'a-3-2']);
        const again = await run<ReplayOut>(relaxed, { action: 'replay', json: true, seqs: 'all' });
        assert.deepEqual(outcomes(again.out), [
          ['agent-1/2', 'kept'],
          ['agent-1/3', 'duplicate'],
          ['agent-1/5', 'kept'],
        ]);

        const a = await kafka.readAll(topicA, { expect: 3 });
        assert.deepEqual(a.map((r) => r.value.toString()), ['a-3-1', 'a-3-2', 'a-4-1'], 'each line of topicA once, the forgery never');
        assert.deepEqual(a.map((r) => r.headers['ferry.seq']), ['3', '3', '4']);
        const b = await kafka.readAll(topicB, { expect: 2 });
        assert.deepEqual(b.map((r) => r.value.toString()), ['b-1', 'b-2']);

        const after = await run<ListOut>(strict, { action: 'list', json: true });
        assert.deepEqual(after.out.deadLetters.map((d) => d.msgId), ['agent-1/2', 'agent-1/5'], 'only the ones that cannot be replayed are left');
        assert.equal(after.out.replayed, 4);
        assert.equal(after.out.discarded, 0);
      });
    });
  }

  it('bounds the dead-letter stream by bytes, discarding the oldest, and list counts the discarded ones', async () => {
    const c = config({ deadLetterMaxBytes: 4096 });
    // An older gateway created it unbounded: the limits are applied at start.
    await jsm.streams.add({ name: c.nats!.deadLetterStream, subjects: [c.nats!.deadLetterSubject], storage: StorageType.File, retention: RetentionPolicy.Limits });
    await ensureJetStream(jsm, c.nats!, silentLogger());
    const cfg = (await jsm.streams.info(c.nats!.deadLetterStream)).config;
    assert.equal(cfg.max_bytes, 4096);
    assert.equal(cfg.discard, 'old');
    assert.equal(cfg.max_age, 30 * 24 * 3600 * 1e9);
    for (let seq = 1; seq <= 20; seq++) await plant(c, 'agent-7', seq, 'dl-a', ['x'.repeat(400)]);
    const { out } = await run<ListOut>(c, { action: 'list', json: true });
    assert.ok(out.messages > 0 && out.messages < 20, `some kept, the oldest discarded (${out.messages} left)`);
    assert.equal(out.discarded, 20 - out.messages);
    assert.equal(out.deadLetters.at(-1)!.msgId, 'agent-7/20', 'the newest are kept');
  });

  it('refuses an existing chunk stream with max_age, naming the stream, the setting and the fix', async () => {
    const c = config();
    await jsm.streams.add({ name: c.nats!.stream, subjects: [`${c.nats!.subjectPrefix}.>`], storage: StorageType.File, retention: RetentionPolicy.Workqueue, max_age: 3600 * 1e9 });
    await assert.rejects(ensureJetStream(jsm, c.nats!, silentLogger()), (err: unknown) => {
      assert.ok(err instanceof StreamUnsafeError);
      assert.equal(err.code, 'FERRY_STREAM_UNSAFE');
      assert.equal(err.stream, c.nats!.stream);
      assert.deepEqual(err.settings.map((s) => s.setting), ['max_age']);
      assert.match(err.message, new RegExp(`nats stream edit ${c.nats!.stream} --max-age=0`));
      return true;
    });
    assert.equal((await jsm.streams.info(c.nats!.stream)).config.max_age, 3600 * 1e9, 'left as it was');
    // The input refuses to start on it too, with the same explanation.
    const input = new JetStreamInput({ config: c.nats!, sink: createKafkaSink(c.kafka, { gatewayId: 'x', log: silentLogger(), registry: createRegistry({ defaultMetrics: false }) }), log: silentLogger(), registry: createRegistry({ defaultMetrics: false }) });
    await assert.rejects(input.start(), /max_age .*nats stream edit/);
  });

  it('resets max_age and rollup on a chunk stream the gateway created', async () => {
    const c = config();
    await ensureJetStream(jsm, c.nats!, silentLogger());
    const created = (await jsm.streams.info(c.nats!.stream)).config;
    await jsm.streams.update(c.nats!.stream, { ...created, max_age: 3600 * 1e9, allow_rollup_hdrs: true });
    await ensureJetStream(jsm, c.nats!, silentLogger());
    const now = (await jsm.streams.info(c.nats!.stream)).config;
    assert.equal(now.max_age, 0);
    assert.equal(now.allow_rollup_hdrs, false);
  });
});
