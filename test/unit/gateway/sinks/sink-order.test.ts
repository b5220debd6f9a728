// The Kafka sink keeps a file's order through a transient failure: nothing queued behind a
// failed flush is produced before the failed chunks are tried again.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKafka, fakeSink } from './fake-driver.js';
import { makeLines, testChunk } from './fixtures.js';
import type { KafkaSink } from '../../../../gateway/sinks/kafka/sink.js';
import type { SinkChunk } from '../../../../gateway/sinks/sink.js';

const sinks: KafkaSink[] = [];
afterEach(async () => {
  for (const s of sinks.splice(0)) await s.stop(Date.now() + 1000);
});

/** A chunk of one ~500-byte line: with maxFlushBytes 1024 every chunk is a flush of its own. */
function chunk(seq: number): SinkChunk {
  return { chunk: testChunk({ seq, topic: 'logs', lines: [Buffer.concat([Buffer.from(`line-${seq}:`), makeLines(1, 490, 'x')[0]!])] }), source: 'nats' };
}

/** A fake Kafka whose first produce request to `logs` fails the way a dropped connection does. */
function failingOnce(): FakeKafka {
  const fake = new FakeKafka({ logs: 1 });
  let failures = 1;
  fake.onSend = (b) => {
    if (b.records.some((r) => r.topic === 'logs') && failures-- > 0) throw new Error('fake: connection closed');
  };
  return fake;
}

for (const delivery of ['at-least-once', 'exactly-once'] as const) {
  describe(`Kafka sink order after a transient failure (${delivery})`, () => {
    const start = async (fake: FakeKafka) => {
      const sink = await fakeSink(fake, { delivery, maxFlushBytes: 1024, maxBatchBytes: 1024 });
      sinks.push(sink);
      return sink;
    };

    it('answers retry for every chunk of the call queued behind a failed flush, so none is produced ahead of it', async () => {
      const fake = failingOnce();
      const sink = await start(fake);
      const outcomes = await sink.send([1, 2, 3].map(chunk));
      assert.deepEqual(outcomes.map((o) => o.kind), ['retry', 'retry', 'retry']);
      assert.deepEqual(fake.values('logs'), [], 'nothing of the chunks behind the failed one reached Kafka');

      // The input tries them all again, in order: they arrive in order.
      const again = await sink.send([1, 2, 3].map(chunk));
      assert.deepEqual(again.map((o) => o.kind), ['ok', 'ok', 'ok']);
      assert.deepEqual(fake.values('logs').map((v) => v.split(':')[0]), ['line-1', 'line-2', 'line-3']);
    });

    it('answers retry for the chunks of other calls queued at the time of the failure', async () => {
      const fake = failingOnce();
      const sink = await start(fake);
      const [first, second] = await Promise.all([sink.send([chunk(1), chunk(2)]), sink.send([chunk(3)])]);
      assert.deepEqual([...first, ...second].map((o) => o.kind), ['retry', 'retry', 'retry']);
      assert.deepEqual(fake.values('logs'), []);
    });
  });
}
