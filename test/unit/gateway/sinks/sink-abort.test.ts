// abortInFlight(): at an input's stop deadline, nothing the sink holds may still commit once it
// resolves, so the input can give the messages back (nak) without another gateway committing
// them a second time.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKafka, fakeSink, gate } from './fake-driver.js';
import { makeLines, testChunk } from './fixtures.js';
import { waitFor } from '../../../harness/wait.js';
import type { KafkaSink } from '../../../../gateway/sinks/kafka/sink.js';
import type { SinkChunk, SinkOutcome } from '../../../../gateway/sinks/sink.js';

const sinks: KafkaSink[] = [];
afterEach(async () => {
  for (const s of sinks.splice(0)) await s.stop(Date.now() + 1000);
});

function chunk(seq: number, lines = 1): SinkChunk {
  return { chunk: testChunk({ seq, topic: 'logs', lines: makeLines(lines, 300, `c${seq}`) }), source: 'nats' };
}

/** Resolves to whether `p` settled within a few event-loop turns. */
async function settledSoon(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
  return done;
}

describe('Kafka sink abortInFlight (exactly-once)', () => {
  it('answers retry for the chunks of an open transaction and the queued ones, and never commits that transaction', async () => {
    const fake = new FakeKafka({ logs: 1 });
    const hold = gate();
    fake.onSend = (b) => (b.records.some((r) => r.topic === 'logs') ? hold.promise : undefined);
    const sink = await fakeSink(fake, { maxFlushBytes: 1024, maxBatchBytes: 1024 });
    sinks.push(sink);
    const inFlight = sink.send([chunk(1)]);
    await waitFor(() => fake.batches.length > 0, 5000, 'the first produce request');
    const queued = sink.send([chunk(2)]);

    await sink.abortInFlight();
    const outcomes: SinkOutcome[] = [...(await inFlight), ...(await queued)];
    assert.deepEqual(outcomes.map((o) => o.kind), ['retry', 'retry']);

    // The held produce request now returns: the sink must abort, not commit.
    hold.open();
    // (transaction 1 is the empty one that fences a previous producer at start)
    await waitFor(() => fake.log.includes('abort 1'), 5000, 'the transaction to be aborted');
    assert.deepEqual(fake.log.filter((l) => l.startsWith('commit')), []);
    assert.equal(fake.values('logs').length, 0);
    assert.equal(sink.isCommitted('agent-1', 1), false);

    // The sink keeps working for what comes after (once the aborted flush has ended).
    await waitFor(async () => (await sink.send([chunk(1), chunk(2)])).every((o) => o.kind === 'ok'), 5000, 'the chunks to be produced after the abort');
    assert.equal(fake.values('logs').length, 2);
  });

  it('waits for a commit already on its way and reports what it did', async () => {
    const fake = new FakeKafka({ logs: 1 });
    const hold = gate();
    fake.onCommit = () => hold.promise;
    const sink = await fakeSink(fake);
    sinks.push(sink);
    const sent = sink.send([chunk(1)]);
    await waitFor(() => fake.log.includes('commit 1'), 5000, 'the commit to be sent');
    const aborted = sink.abortInFlight();
    assert.equal(await settledSoon(aborted), false, 'abortInFlight waits while the commit may still succeed');
    hold.open();
    await aborted;
    assert.deepEqual(await sent, [{ kind: 'ok', duplicate: false }]);
    assert.equal(fake.values('logs').length, 1);
  });

  it('resolves at once when nothing is in flight', async () => {
    const fake = new FakeKafka({ logs: 1 });
    const sink = await fakeSink(fake);
    sinks.push(sink);
    assert.equal(await settledSoon(sink.abortInFlight()), true);
  });
});

describe('Kafka sink abortInFlight (at-least-once)', () => {
  it('answers retry for the flush under way and sends none of its remaining requests', async () => {
    const fake = new FakeKafka({ logs: 1 });
    const hold = gate();
    fake.onSend = (_b, index) => (index === 0 ? hold.promise : undefined);
    // Three 300-byte lines per request of 1 KiB: the chunk's 9 lines take three requests.
    const sink = await fakeSink(fake, { delivery: 'at-least-once', maxBatchBytes: 1024 });
    sinks.push(sink);
    const sent = sink.send([chunk(1, 9)]);
    await waitFor(() => fake.batches.length === 1, 5000, 'the first produce request');
    await sink.abortInFlight();
    assert.deepEqual((await sent).map((o) => o.kind), ['retry']);
    hold.open();
    // Once a later chunk is produced, the aborted flush has ended (one flush at a time).
    await waitFor(async () => (await sink.send([chunk(2)]))[0]?.kind === 'ok', 5000, 'a later chunk to be produced');
    assert.equal(fake.batches.length, 2, 'no request of the aborted flush after the abort');
    assert.ok(fake.batches[1]!.records.every((r) => r.value.startsWith('c2-')));
  });
});
