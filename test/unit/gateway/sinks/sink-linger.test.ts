// When the Kafka sink produces: an idle sink produces a chunk at once (kafka.lingerMs defaults
// to 0), and what arrives while a flush is under way gathers into the next flush (a group
// commit), so batching at full speed does not need a timer.
import { describe, it, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { FakeKafka, fakeSink, gate } from './fake-driver.js';
import { testChunk } from './fixtures.js';
import type { KafkaSink } from '../../../../gateway/sinks/kafka/sink.js';
import type { SinkChunk } from '../../../../gateway/sinks/sink.js';

const sinks: KafkaSink[] = [];
afterEach(async () => {
  mock.timers.reset();
  for (const s of sinks.splice(0)) await s.stop(Date.now() + 1000);
});

function chunk(seq: number): SinkChunk {
  return { chunk: testChunk({ seq, topic: 'logs', lines: [Buffer.from(`line-${seq}`)] }), source: 'nats' };
}

for (const delivery of ['at-least-once', 'exactly-once'] as const) {
  describe(`Kafka sink: when it produces (${delivery})`, () => {
    it('produces a lone chunk at once with the default kafka.lingerMs, without waiting on a timer', async () => {
      const fake = new FakeKafka({ logs: 1 });
      const sink = await fakeSink(fake, { delivery, lingerMs: undefined });
      sinks.push(sink);
      // No timer fires from here on: a sink that lingered would never produce.
      mock.timers.enable({ apis: ['setTimeout', 'setInterval', 'Date'], now: Date.now() });
      const outcome = sink.send([chunk(1)]);
      for (let i = 0; i < 50 && fake.batches.length === 0; i++) await nextTurn();
      assert.equal(fake.batches.length, 1, 'the chunk was produced without any timer firing');
      mock.timers.reset();
      assert.deepEqual((await outcome).map((o) => o.kind), ['ok']);
    });

    it('gathers the chunks that arrive during a flush into the next one', async () => {
      const fake = new FakeKafka({ logs: 1 });
      const held = gate();
      let first = true;
      fake.onSend = async () => {
        if (!first) return;
        first = false;
        await held.promise;
      };
      const sink = await fakeSink(fake, { delivery, lingerMs: undefined });
      sinks.push(sink);
      const a = sink.send([chunk(1)]);
      for (let i = 0; i < 50 && fake.batches.length === 0; i++) await nextTurn();
      const rest = [2, 3, 4].map((seq) => sink.send([chunk(seq)]));
      held.open();
      const outcomes = (await Promise.all([a, ...rest])).flat();
      assert.deepEqual(outcomes.map((o) => o.kind), ['ok', 'ok', 'ok', 'ok']);
      assert.deepEqual(
        fake.batches.map((b) => b.records.filter((r) => r.topic === 'logs').map((r) => r.value)),
        [['line-1'], ['line-2', 'line-3', 'line-4']],
        'one flush for the first chunk, one for the three that came meanwhile',
      );
      assert.deepEqual(fake.committed('logs').map((r) => r.value), ['line-1', 'line-2', 'line-3', 'line-4']);
    });
  });
}
