// JetStreamInput against a real nats-server, fake sink: what a hostile or broken agent sends
// over NATS is refused (dead-lettered with its reason, or dropped and counted), and the server
// credentials never leak.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../../../harness/index.js';
import { JetStreamInput } from '../../../../gateway/inputs/jetstream/input.js';
import { createRegistry } from '../../../../shared/metrics.js';
import type { Heartbeat } from '../../../../shared/protocol.js';
import { encodeTestChunk } from '../sinks/fixtures.js';
import { FakeSink, capturingLogger, jetStreamFixture } from './fixtures.js';

const fx = jetStreamFixture();

function heartbeat(agentId: string): Heartbeat {
  return {
    v: 1, agentId, host: agentId, version: '0.1.0', sentAtMs: Date.now(), startedAtMs: Date.now(),
    spool: { chunks: 0, bytes: 0, oldestUnshippedAgeMs: null, full: false }, lastShipAtMs: null, transport: 'nats', inputs: 1, files: 1,
  };
}

describe('JetStreamInput and hostile input', () => {
  it('dead-letters (reason identity) a chunk published on another agent\'s subject or under another Nats-Msg-Id, and delivers the genuine one', async () => {
    const config = fx.config();
    const sink = new FakeSink();
    const registry = createRegistry({ defaultMetrics: false });
    await fx.startInput(config, sink, { registry });
    const spoof = encodeTestChunk({ agentId: 'victim', seq: 7, topic: 'logs', lines: ['forged'] });
    // evil's own subject, the victim's identity in the header
    await fx.js.publish(`${config.subjectPrefix}.evil`, spoof, { msgID: 'evil/7' });
    // evil's chunk under a Nats-Msg-Id that is not its chunk id
    await fx.js.publish(`${config.subjectPrefix}.evil`, encodeTestChunk({ agentId: 'evil', seq: 1, topic: 'logs', lines: ['x'] }), { msgID: 'victim/8' });
    await fx.publish(config, 7, 'logs', 'victim', ['genuine']);
    await waitFor(() => sink.received.length >= 1, 10_000, 'the genuine chunk at the sink');
    await waitFor(async () => (await fx.deadLetters(config)).length === 2, 10_000, 'two dead letters');
    const dead = await fx.deadLetters(config);
    assert.deepEqual(dead.map((d) => d.reason), ['identity', 'identity']);
    assert.match(dead[0]!.error, /claims agent "victim" but was published on/);
    assert.match(dead[1]!.error, /Nats-Msg-Id "victim\/8" is not the chunk id "evil\/1"/);
    assert.deepEqual(sink.received.map((c) => [c.chunk.header.agentId, c.chunk.records[0]!.value.toString()]), [['victim', 'genuine']]);
    assert.equal(await fx.metric(registry, 'ferry_gateway_jetstream_dead_letter_chunks_total', { reason: 'identity' }), 2);
    await waitFor(async () => (await fx.pending(config)) === 0, 10_000, 'the stream to be empty');
  });

  it('dead-letters (reason internal-topic) a chunk for an internal topic, whatever nats.allowTopics says', async () => {
    const config = fx.config({ allowTopics: ['*'] });
    const sink = new FakeSink();
    await fx.startInput(config, sink);
    await fx.publish(config, 1, 'ferry.committed-chunks');
    await fx.publish(config, 2, '__consumer_offsets');
    await fx.publish(config, 3, 'logs');
    await waitFor(() => sink.received.length >= 1, 10_000, 'the ordinary chunk');
    await waitFor(async () => (await fx.deadLetters(config)).length === 2, 10_000, 'two dead letters');
    assert.deepEqual((await fx.deadLetters(config)).map((d) => d.reason), ['internal-topic', 'internal-topic']);
    assert.deepEqual(sink.seqs(), [3]);
  });

  it('dead-letters (reason max-deliveries) a message delivered more than nats.maxDeliveries times, without decoding it', async () => {
    const config = fx.config({ maxDeliveries: 2, ackWaitMs: 30_000 });
    const sink = new FakeSink();
    // Create the consumer, then deliver the message twice elsewhere (like gateways that crashed on it).
    await fx.startInput(config, sink);
    await fx.stopLast();
    // The stopped input's pull requests may outlive it on the server for a moment; a message
    // published before they are gone would go to them (a delivery nobody sees) instead of ours.
    await waitFor(async () => (await fx.jsm.consumers.info(config.stream, config.consumer)).num_waiting === 0, 10_000, 'the stopped input\'s pulls to be gone');
    await fx.publish(config, 1);
    const raw = await fx.js.consumers.get(config.stream, config.consumer);
    for (let i = 0; i < 2; i++) {
      const m = await raw.next({ expires: 5000 });
      assert.ok(m, `delivery ${i + 1}`);
      m.nak();
    }
    const registry = createRegistry({ defaultMetrics: false });
    await fx.startInput(config, sink, { registry });
    await waitFor(async () => (await fx.deadLetters(config)).length === 1, 10_000, 'one dead letter');
    const [dead] = await fx.deadLetters(config);
    assert.equal(dead!.reason, 'max-deliveries');
    assert.match(dead!.error, /delivered it 3 times, more than nats\.maxDeliveries \(2\)/);
    assert.equal(sink.received.length, 0);
    await waitFor(async () => (await fx.pending(config)) === 0, 10_000, 'the stream to be empty');
  });

  it('drops and counts a heartbeat whose agentId is not the agent its subject names', async () => {
    const config = fx.config();
    const beats: Heartbeat[] = [];
    const registry = createRegistry({ defaultMetrics: false });
    await fx.startInput(config, new FakeSink(), { registry, onHeartbeat: (hb) => beats.push(hb) });
    fx.nc.publish(`${config.heartbeatSubject}.evil`, JSON.stringify(heartbeat('victim')));
    fx.nc.publish(`${config.heartbeatSubject}.web-01`, JSON.stringify(heartbeat('web-01')));
    await waitFor(() => beats.length >= 1, 5000, 'the genuine heartbeat');
    await waitFor(async () => (await fx.metric(registry, 'ferry_gateway_jetstream_errors_total', { type: 'heartbeat-identity' })) === 1, 5000, 'the forged heartbeat counted');
    assert.deepEqual(beats.map((b) => b.agentId), ['web-01']);
  });

  it('records heartbeats of agents whose id holds dots (web.eu-1: a subject of several tokens)', async () => {
    const config = fx.config();
    const beats: Heartbeat[] = [];
    await fx.startInput(config, new FakeSink(), { onHeartbeat: (hb) => beats.push(hb) });
    fx.nc.publish(`${config.heartbeatSubject}.web.eu-1`, JSON.stringify(heartbeat('web.eu-1')));
    await waitFor(() => beats.length >= 1, 5000, 'the heartbeat of web.eu-1');
    assert.deepEqual(beats.map((b) => b.agentId), ['web.eu-1']);
  });

  it('never shows the user:pass of nats.servers in its logs, errors or health', async () => {
    const port = new URL(fx.nats.url).port;
    const secret = 's3cr3t-pw';
    const { log, text } = capturingLogger();
    const config = fx.config({ servers: [`nats://ferry:${secret}@127.0.0.1:${port}`] });
    const input = await fx.startInput(config, new FakeSink(), { log });
    assert.match(text(), /JetStream input started/);
    assert.match(text(), /nats:\/\/\*\*\*@127\.0\.0\.1/);
    assert.doesNotMatch(input.health().detail, new RegExp(secret));
    const unreachable = new JetStreamInput({ config: { ...config, servers: [`nats://ferry:${secret}@127.0.0.1:1`] }, sink: new FakeSink(), log, registry: createRegistry({ defaultMetrics: false }) });
    const err = await unreachable.start().then(() => undefined, (e: unknown) => e as Error);
    assert.ok(err, 'an unreachable server fails the start');
    assert.match(err.message, /cannot connect to NATS at nats:\/\/\*\*\*@127\.0\.0\.1:1 \(nats\.servers\)/);
    assert.doesNotMatch(err.message, new RegExp(secret));
    await unreachable.stop(Date.now() + 1000);
    assert.doesNotMatch(text(), new RegExp(secret));
  });
});
