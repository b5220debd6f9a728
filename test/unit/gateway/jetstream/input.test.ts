// JetStreamInput against a real nats-server (JetStream on), with a fake sink.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { AckPolicy, DiscardPolicy, RetentionPolicy } from '@nats-io/jetstream';
import { waitFor } from '../../../harness/index.js';
import { JetStreamInput } from '../../../../gateway/inputs/jetstream/input.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';
import { KafkaError } from '../../../../shared/errors.js';
import type { Heartbeat } from '../../../../shared/protocol.js';
import { FakeSink, jetStreamFixture } from './fixtures.js';

const fx = jetStreamFixture();
const natsConfig = fx.config.bind(fx);
const startInput = fx.startInput.bind(fx);
const publish = fx.publish.bind(fx);
const pending = fx.pending.bind(fx);
const deadLetters = fx.deadLetters.bind(fx);

describe('JetStreamInput', () => {
  it('creates a work-queue stream that refuses new messages when full, and an explicit-ack durable consumer', async () => {
    const config = natsConfig({ maxBytes: 10_000_000, ackWaitMs: 5000, maxAckPending: 77 });
    await startInput(config, new FakeSink());
    const stream = await fx.jsm.streams.info(config.stream);
    assert.deepEqual(stream.config.subjects, [`${config.subjectPrefix}.>`]);
    assert.equal(stream.config.retention, RetentionPolicy.Workqueue);
    assert.equal(stream.config.discard, DiscardPolicy.New);
    assert.equal(stream.config.max_bytes, 10_000_000);
    const consumer = await fx.jsm.consumers.info(config.stream, config.consumer);
    assert.equal(consumer.config.ack_policy, AckPolicy.Explicit);
    assert.equal(consumer.config.max_ack_pending, 77);
    assert.equal(consumer.config.ack_wait, 5000 * 1_000_000);
    assert.ok(await fx.jsm.streams.info(config.deadLetterStream));
  });

  it('updates the safe settings of an existing consumer and stream instead of failing', async () => {
    const config = natsConfig();
    await startInput(config, new FakeSink());
    await fx.stopLast();
    const changed = { ...config, maxAckPending: 12, duplicateWindowMs: 60_000 };
    await startInput(changed, new FakeSink());
    assert.equal((await fx.jsm.consumers.info(config.stream, config.consumer)).config.max_ack_pending, 12);
    assert.equal((await fx.jsm.streams.info(config.stream)).config.duplicate_window, 60_000 * 1_000_000);
  });

  it('refuses to start on an existing consumer whose ack policy is not explicit, saying what to do', async () => {
    const config = natsConfig();
    await fx.jsm.streams.add({ name: config.stream, subjects: [`${config.subjectPrefix}.>`] });
    await fx.jsm.consumers.add(config.stream, { durable_name: config.consumer, ack_policy: AckPolicy.None });
    const input = new JetStreamInput({ config, sink: new FakeSink(), log: silentLogger(), registry: createRegistry({ defaultMetrics: false }) });
    await assert.rejects(input.start(), /ack_policy "none".*needs "explicit"/);
  });

  it('hands chunks to the sink in stream order and acks them once the sink has them', async () => {
    const config = natsConfig();
    const sink = new FakeSink();
    await startInput(config, sink);
    for (let s = 1; s <= 30; s++) await publish(config, s);
    await waitFor(() => sink.received.length >= 30, 10_000, '30 chunks at the sink');
    assert.deepEqual(sink.seqs(), Array.from({ length: 30 }, (_, i) => i + 1));
    assert.equal(sink.received[0]!.source, 'nats');
    assert.equal(sink.received[0]!.chunk.records[0]!.value.toString(), 'line 1');
    await waitFor(async () => (await pending(config)) === 0, 10_000, 'the stream to be empty (all acked)');
  });

  it('dead-letters a malformed chunk with its reason and keeps going', async () => {
    const config = natsConfig();
    const sink = new FakeSink();
    await startInput(config, sink);
    await publish(config, 1);
    await fx.js.publish(`${config.subjectPrefix}.agent-1`, Buffer.from('FRYC\x01garbage that is not a chunk'), { msgID: 'agent-1/2' });
    await fx.js.publish(`${config.subjectPrefix}.agent-1`, new Uint8Array(0), { msgID: 'agent-1/empty' });
    await publish(config, 3);
    await waitFor(() => sink.received.length >= 2, 10_000, 'the good chunks at the sink');
    assert.deepEqual(sink.seqs(), [1, 3]);
    await waitFor(async () => (await deadLetters(config)).length === 2, 10_000, 'two dead letters');
    const dead = await deadLetters(config);
    assert.deepEqual(dead.map((d) => d.reason), ['malformed', 'malformed']);
    assert.equal(Buffer.from(dead[0]!.data).toString('latin1'), 'FRYC\x01garbage that is not a chunk');
    assert.equal(dead[0]!.msgId, 'agent-1/2');
    await waitFor(async () => (await pending(config)) === 0, 10_000, 'the stream to be empty');
  });

  it('holds a chunk for a topic outside nats.allowTopics (a setting): never sent to the sink nor dead-lettered, delivered once a restart allows it', async () => {
    const config = natsConfig({ allowTopics: ['app-*'] });
    const sink = new FakeSink();
    const first = await startInput(config, sink);
    await publish(config, 1, 'secret');
    await publish(config, 2, 'secret');
    await publish(config, 1, 'app-logs', 'agent-2');
    await waitFor(() => sink.received.length >= 1, 10_000, 'the other agent\'s allowed chunk');
    assert.deepEqual(sink.received.map((c) => c.chunk.header.agentId), ['agent-2']);
    await waitFor(() => /holding 1 agent\(s\).*agent-1 \(2 chunks.*nats\.allowTopics/.test(first.health().detail), 10_000, 'health to name the held agent');
    assert.equal(first.health().ready, true, 'one held agent does not make the input unready');
    assert.equal((await deadLetters(config)).length, 0);
    await fx.stopLast();
    const allowed = await startInput({ ...config, allowTopics: ['*'] }, sink);
    await waitFor(() => sink.received.length >= 3, 10_000, 'the held chunks after the restart');
    assert.deepEqual(sink.seqs('agent-1'), [1, 2], `in order: ${sink.received.map((c) => c.chunk.header.agentId + '/' + c.chunk.header.seq).join(',')}`);
    await waitFor(async () => (await pending(config)) === 0, 10_000, 'the stream to be empty');
    assert.doesNotMatch(allowed.health().detail, /holding/);
  });

  it('dead-letters a chunk the sink answers fatal for the chunk\'s own fault, and acks the others of the batch', async () => {
    const config = natsConfig();
    const sink = new FakeSink();
    sink.decide = (c) => (c.chunk.header.seq === 2 ? { kind: 'fatal', fault: 'chunk', error: new KafkaError('record too large', false) } : { kind: 'ok', duplicate: false });
    await startInput(config, sink);
    for (let s = 1; s <= 3; s++) await publish(config, s);
    await waitFor(async () => (await deadLetters(config)).length === 1, 10_000, 'one dead letter');
    assert.equal((await deadLetters(config))[0]!.reason, 'refused');
    await waitFor(async () => (await pending(config)) === 0, 10_000, 'the stream to be empty');
  });

  it('holds chunks the sink answers retry, sends them again before anything newer, and acks them when ok', async () => {
    const config = natsConfig();
    const sink = new FakeSink();
    let refuse = true;
    sink.decide = (c) => (refuse && c.chunk.header.seq >= 2 ? { kind: 'retry', error: new KafkaError('kafka down', true), retryAfterMs: 50 } : { kind: 'ok', duplicate: false });
    const input = await startInput(config, sink);
    for (let s = 1; s <= 3; s++) await publish(config, s);
    await waitFor(() => sink.calls.length >= 4, 10_000, 'the sink to be asked again');
    assert.match(input.health().detail, /holding/);
    // Meanwhile newer chunks wait in JetStream.
    for (let s = 4; s <= 5; s++) await publish(config, s);
    await waitFor(() => sink.calls.length >= 6, 10_000, 'more retries');
    assert.ok(!sink.seqs().includes(4), 'nothing newer is sent while chunks are held');
    refuse = false;
    await waitFor(() => sink.seqs().includes(5), 10_000, 'the newer chunks after the held ones');
    const firstOk = sink.seqs().filter((s, i, all) => all.indexOf(s) === i);
    assert.deepEqual(firstOk, [1, 2, 3, 4, 5], 'first sends in stream order');
    await waitFor(async () => (await pending(config)) === 0, 10_000, 'the stream to be empty');
  });

  it('gives unfinished chunks back to JetStream on stop, so another input takes them at once', async () => {
    const config = natsConfig({ ackWaitMs: 30_000 });
    const stuck = new FakeSink();
    stuck.decide = () => ({ kind: 'retry', error: new KafkaError('down', true), retryAfterMs: 60_000 });
    const first = await startInput(config, stuck);
    await publish(config, 1);
    await waitFor(() => stuck.calls.length >= 1, 10_000, 'the first input to hold the chunk');
    const stopStarted = Date.now();
    await first.stop(Date.now() + 2000);
    assert.ok(Date.now() - stopStarted < 5000, 'stop honours its deadline');
    const sink = new FakeSink();
    await startInput(config, sink);
    // Well before ack_wait (30 s): it was nak()ed, not abandoned.
    await waitFor(() => sink.received.length >= 1, 10_000, 'the second input to get the chunk');
    assert.deepEqual(sink.seqs(), [1]);
  });

  it('passes agents\' heartbeats to onHeartbeat and ignores ones that do not parse', async () => {
    const config = natsConfig();
    const beats: Heartbeat[] = [];
    await startInput(config, new FakeSink(), { onHeartbeat: (hb) => beats.push(hb) });
    const hb: Heartbeat = {
      v: 1, agentId: 'web-01', host: 'web-01', version: '0.1.0', sentAtMs: Date.now(), startedAtMs: Date.now(),
      spool: { chunks: 3, bytes: 100, oldestUnshippedAgeMs: 5, full: false }, lastShipAtMs: null, transport: 'nats', inputs: 1, files: 2,
    };
    fx.nc.publish(`${config.heartbeatSubject}.web-01`, 'not json');
    fx.nc.publish(`${config.heartbeatSubject}.web-01`, JSON.stringify({ v: 99 }));
    fx.nc.publish(`${config.heartbeatSubject}.web-01`, JSON.stringify(hb));
    await waitFor(() => beats.length >= 1, 5000, 'a heartbeat');
    assert.equal(beats.length, 1);
    assert.equal(beats[0]!.agentId, 'web-01');
  });

  it('reports not ready while NATS is down and resumes consuming after it comes back', async () => {
    const config = natsConfig();
    const sink = new FakeSink();
    const input = await startInput(config, sink);
    await publish(config, 1);
    await waitFor(() => sink.received.length >= 1, 10_000, 'the first chunk');
    assert.equal(input.health().ready, true);
    await fx.nats.kill();
    await waitFor(() => !input.health().ready, 10_000, 'health to show the disconnection');
    await fx.nats.restart();
    await waitFor(() => input.health().ready, 20_000, 'health to show the reconnection');
    // The test's own client reconnects too.
    await waitFor(async () => {
      await publish(config, 2);
      return true;
    }, 20_000, 'publishing again');
    await waitFor(() => sink.seqs().includes(2), 20_000, 'the chunk published after the restart');
  });
});
