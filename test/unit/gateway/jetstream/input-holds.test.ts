// JetStreamInput against a real nats-server, fake sink: holding what a setting refuses (per
// agent), budgeted decoding, ack leases that run out, and the stop deadline's abort-then-nak.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { waitFor } from '../../../harness/index.js';
import { ensureJetStream } from '../../../../gateway/inputs/jetstream/setup.js';
import type { SinkChunk, SinkOutcome } from '../../../../gateway/sinks/sink.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { silentLogger } from '../../../../shared/log.js';
import { KafkaError } from '../../../../shared/errors.js';
import { FakeSink, capturingLogger, jetStreamFixture, type NatsConfig } from './fixtures.js';

const fx = jetStreamFixture();

const ok: SinkOutcome = { kind: 'ok', duplicate: false };
const missingTopic = (): SinkOutcome => ({ kind: 'fatal', fault: 'setting', error: new KafkaError('topic "missing" does not exist in Kafka', false) });

/** A sink whose send() stays open until abortInFlight() settles it as retry. */
class HangingSink extends FakeSink {
  readonly events: string[] = [];
  abortDelayMs = 300;
  /** when false, abortInFlight() never resolves */
  abortResolves = true;
  #pending: Array<() => void> = [];
  override send(chunks: readonly SinkChunk[]): Promise<SinkOutcome[]> {
    this.calls.push([...chunks]);
    this.received.push(...chunks);
    this.events.push('send');
    return new Promise((resolve) => this.#pending.push(() => resolve(chunks.map(() => ({ kind: 'retry', error: new KafkaError('transaction aborted', true) })))));
  }
  abortInFlight(): Promise<void> {
    this.events.push('abort');
    if (!this.abortResolves) return new Promise(() => undefined);
    return new Promise((resolve) =>
      setTimeout(() => {
        for (const settle of this.#pending.splice(0)) settle();
        this.events.push('aborted');
        resolve();
      }, this.abortDelayMs),
    );
  }
}

async function prepare(config: NatsConfig): Promise<void> {
  await ensureJetStream(fx.jsm, config, silentLogger());
}

describe('JetStreamInput holds and limits', () => {
  it('holds an agent whose chunk a setting refuses, keeps its later chunks behind it in order, lets other agents flow, and delivers them once fixed', async () => {
    const config = fx.config({ ackWaitMs: 5000 });
    const sink = new FakeSink();
    let topicExists = false;
    sink.decide = (c) => (c.chunk.header.topic === 'missing' && !topicExists ? missingTopic() : ok);
    const registry = createRegistry({ defaultMetrics: false });
    const input = await fx.startInput(config, sink, { registry });
    await fx.publish(config, 1, 'missing', 'held');
    await waitFor(() => sink.seqs('held').length >= 1, 10_000, 'the refused chunk at the sink');
    for (let s = 2; s <= 4; s++) await fx.publish(config, s, s === 3 ? 'other' : 'missing', 'held');
    for (let s = 1; s <= 5; s++) await fx.publish(config, s, 'logs', 'flowing');
    await waitFor(() => sink.seqs('flowing').length >= 5, 10_000, 'the other agent\'s chunks');
    await waitFor(() => /holding 1 agent\(s\).*held \(4 chunks.*does not exist/.test(input.health().detail), 10_000, 'health to show the held agent and why');
    assert.equal(input.health().ready, true);
    assert.equal(await fx.metric(registry, 'ferry_gateway_jetstream_held_agents'), 1);
    assert.equal(await fx.metric(registry, 'ferry_gateway_jetstream_agent_holds_total', { reason: 'kafka-setting' }), 1);
    // Only the refused chunk is tried again, with backoff (1 s, 2 s, ...): no hot loop, nothing behind it sent.
    const t0 = Date.now();
    await waitFor(() => sink.seqs('held').length >= 2, 10_000, 'a second try');
    assert.ok(Date.now() - t0 >= 200, 'waited before the next try');
    assert.ok(sink.seqs('held').every((s) => s === 1), `only the held chunk is tried: ${sink.seqs('held').join(',')}`);
    assert.equal((await fx.deadLetters(config)).length, 0, 'never dead-lettered');
    assert.equal(await fx.pending(config), 4, 'the held agent\'s chunks are still in JetStream');
    topicExists = true;
    await waitFor(async () => (await fx.pending(config)) === 0, 15_000, 'the held chunks delivered and acked');
    const tries = sink.seqs('held');
    assert.deepEqual(tries.slice(tries.lastIndexOf(1)), [1, 2, 3, 4], 'the held agent\'s chunks in order once it moves');
    assert.doesNotMatch(input.health().detail, /holding/);
    assert.equal(await fx.metric(registry, 'ferry_gateway_jetstream_held_agents'), 0);
  });

  it('decodes and sends a fetch in slices of at most nats.maxDecodedRecords records', async () => {
    const config = fx.config({ maxDecodedRecords: 250 });
    await prepare(config);
    const lines = Array.from({ length: 100 }, (_, i) => `r${i}`);
    for (let s = 1; s <= 10; s++) await fx.publish(config, s, 'logs', 'agent-1', lines);
    const sink = new FakeSink();
    // The first call is refused for a moment, so that the whole fetch is queued behind it.
    sink.decide = (_c, call) => (call === 1 ? { kind: 'retry', error: new KafkaError('not yet', true), retryAfterMs: 500 } : ok);
    await fx.startInput(config, sink);
    await waitFor(async () => (await fx.pending(config)) === 0, 10_000, 'all chunks acked');
    const perCall = sink.calls.map((call) => call.reduce((n, c) => n + c.chunk.records.length, 0));
    assert.ok(perCall.every((r) => r <= 250), `records per sink call: ${perCall.join(',')}`);
    assert.ok(sink.calls.length >= 6, `sliced: ${perCall.join(',')}`);
    const firstOk = sink.seqs().filter((s, i, all) => all.indexOf(s) === i);
    assert.deepEqual(firstOk, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 'in stream order');
  });

  it('fetches no more while nats.maxQueuedBytes of chunks wait for a busy sink, then delivers them all in order', async () => {
    const config = fx.config({ maxQueuedBytes: '256KiB', ackWaitMs: 10_000 });
    await prepare(config);
    const lines = Array.from({ length: 100 }, (_, i) => `${i} ${'x'.repeat(1000)}`); // ~100 KB per chunk
    for (let s = 1; s <= 20; s++) await fx.publish(config, s, 'logs', 'agent-1', lines);
    const sink = new HangingSink();
    await fx.startInput(config, sink);
    await waitFor(() => sink.calls.length >= 1, 10_000, 'the first chunks at the sink');
    await new Promise((r) => setTimeout(r, 500)); // room for the pump to fetch whatever it would
    const info = await fx.jsm.consumers.info(config.stream, config.consumer);
    // At the sink: one slice (maxDecodedBytes); queued: about 256 KiB, i.e. 2-3 chunks.
    assert.ok(info.num_ack_pending <= sink.received.length + 4, `delivered to the gateway and not acked: ${info.num_ack_pending}, at the sink: ${sink.received.length}`);
    assert.ok(info.num_pending >= 14, `most chunks are still in JetStream: ${info.num_pending} not delivered yet`);
    await sink.abortInFlight(); // the held call is answered "retry": the same chunks go again
    sink.send = FakeSink.prototype.send.bind(sink);
    await waitFor(async () => (await fx.pending(config)) === 0, 15_000, 'all chunks acked');
    const firstOk = sink.seqs().filter((s, i, all) => all.indexOf(s) === i);
    assert.deepEqual(firstOk, Array.from({ length: 20 }, (_, i) => i + 1), 'in stream order');
  });

  it('drops a held message whose ack lease ran out while NATS was away (no produce, no ack) and lets the redelivery carry it', async () => {
    const config = fx.config({ ackWaitMs: 2000 });
    const sink = new FakeSink();
    let kafkaUp = false;
    let oks = 0;
    sink.decide = () => (kafkaUp ? (oks++, ok) : { kind: 'retry', error: new KafkaError('kafka down', true), retryAfterMs: 100 });
    const registry = createRegistry({ defaultMetrics: false });
    const input = await fx.startInput(config, sink, { registry });
    await fx.publish(config, 1);
    await waitFor(() => sink.calls.length >= 2, 10_000, 'the input to hold the chunk');
    await fx.nats.kill();
    await waitFor(() => !input.health().ready, 10_000, 'the input to see the disconnection');
    await new Promise((r) => setTimeout(r, 2500)); // the outage outlasts ack_wait: no working() gets through
    await fx.nats.restart();
    await waitFor(() => input.health().ready, 20_000, 'the reconnection');
    kafkaUp = true;
    await waitFor(async () => (await fx.metric(registry, 'ferry_gateway_jetstream_dropped_chunks_total', { reason: 'lease-expired' })) === 1, 15_000, 'the stale copy dropped');
    await waitFor(async () => (await fx.pending(config).catch(() => -1)) === 0, 20_000, 'the redelivered copy produced and acked');
    assert.equal(oks, 1, 'produced once: by the redelivery, not by the stale copy');
    assert.ok((await fx.metric(registry, 'ferry_gateway_jetstream_redeliveries_total')) >= 1);
  });

  it('at the stop deadline, awaits the sink\'s abortInFlight() before giving the in-flight chunks back', async () => {
    const config = fx.config({ ackWaitMs: 30_000 });
    const sink = new HangingSink();
    const { log } = capturingLogger((line) => sink.events.push(`log: ${String(line.msg)}`));
    await fx.startInput(config, sink, { log });
    await fx.publish(config, 1);
    await waitFor(() => sink.calls.length >= 1, 10_000, 'the chunk in the sink');
    const started = Date.now();
    await fx.stopLast();
    assert.ok(Date.now() - started < 3500, 'stop honours its deadline');
    const steps = sink.events.filter((e) => !e.startsWith('log: ') || /deadline|gave unfinished/.test(e));
    assert.deepEqual(steps, [
      'send',
      'log: JetStream input stop deadline reached; aborting what the sink has in flight, then giving chunks back',
      'abort',
      'aborted',
      'log: gave unfinished chunks back to JetStream (nak)',
    ]);
    // nak()ed, not abandoned: another input gets it well before ack_wait (30 s).
    const next = new FakeSink();
    await fx.startInput(config, next);
    await waitFor(() => next.received.length >= 1, 10_000, 'the chunk at another input');
  });

  it('stops fetching, and says so in readiness, once held agents keep as many chunks as it may hold', async () => {
    const config = fx.config({ maxAckPending: 4, fetchBatch: 1 });
    const sink = new FakeSink();
    let topicExists = false;
    sink.decide = (c) => (c.chunk.header.topic === 'missing' && !topicExists ? missingTopic() : ok);
    const input = await fx.startInput(config, sink);
    for (let s = 1; s <= 3; s++) await fx.publish(config, s, 'missing', 'held');
    await waitFor(() => /not fetching: held agents keep 3 chunks/.test(input.health().detail), 10_000, 'readiness to say the input is full');
    assert.equal(input.health().ready, false);
    await fx.publish(config, 1, 'logs', 'flowing');
    await fx.publish(config, 4, 'missing', 'held');
    // Nothing more is fetched while full: the other agent's chunk waits in JetStream.
    const info = await fx.jsm.consumers.info(config.stream, config.consumer);
    assert.equal(info.num_ack_pending, 3);
    assert.equal(sink.seqs('flowing').length, 0);
    topicExists = true;
    await waitFor(async () => (await fx.pending(config)) === 0, 15_000, 'everything delivered once the setting is fixed');
    assert.deepEqual(sink.seqs('flowing'), [1]);
    const tries = sink.seqs('held');
    assert.deepEqual(tries.slice(tries.lastIndexOf(1)), [1, 2, 3, 4]);
    assert.equal(input.health().ready, true);
  });

  it('at the stop deadline, leaves chunks the sink could still commit to ack_wait when abortInFlight() does not resolve in time', async () => {
    const config = fx.config({ ackWaitMs: 30_000 });
    const sink = new HangingSink();
    sink.abortResolves = false;
    await fx.startInput(config, sink);
    await fx.publish(config, 1);
    await waitFor(() => sink.calls.length >= 1, 10_000, 'the chunk in the sink');
    const started = Date.now();
    await fx.stopLast();
    assert.ok(Date.now() - started < 3500, 'stop honours its deadline');
    assert.deepEqual(sink.events, ['send', 'abort']);
    // Not nak()ed: nothing is deliverable now (a nak()ed chunk comes back within 0.5 s).
    const raw = await fx.js.consumers.get(config.stream, config.consumer);
    assert.equal(await raw.next({ expires: 2000 }), null);
  });
});
