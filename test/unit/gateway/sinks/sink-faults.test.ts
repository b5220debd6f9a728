// What the Kafka sink refuses, and whose fault it says it is: the chunk (dead-letter / 4xx) or a
// setting (hold and retry visibly). Long records go alone in a request; Kafka decides.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKafka, fakeSink, protocolError } from './fake-driver.js';
import { testChunk } from './fixtures.js';
import type { KafkaSink } from '../../../../gateway/sinks/kafka/sink.js';
import type { SinkChunk, SinkOutcome } from '../../../../gateway/sinks/sink.js';

const sinks: KafkaSink[] = [];
afterEach(async () => {
  for (const s of sinks.splice(0)) await s.stop(Date.now() + 1000);
});

function item(seq: number, lines: string[], topic = 'logs'): SinkChunk {
  return { chunk: testChunk({ seq, topic, lines }), source: 'nats' };
}

function fault(o: SinkOutcome | undefined): string {
  return o?.kind === 'fatal' ? `fatal/${o.fault}` : String(o?.kind);
}

for (const delivery of ['exactly-once', 'at-least-once'] as const) {
  describe(`Kafka sink refusals (${delivery})`, () => {
    const start = async (fake: FakeKafka, overrides: Record<string, unknown> = {}) => {
      const sink = await fakeSink(fake, { delivery, ...overrides });
      sinks.push(sink);
      return sink;
    };

    it('produces a record larger than maxBatchBytes alone in its own produce request', async () => {
      const fake = new FakeKafka({ logs: 1 });
      const sink = await start(fake, { maxBatchBytes: 1024 });
      const big = 'B'.repeat(5000);
      const outcomes = await sink.send([item(1, ['a', big, 'c'])]);
      assert.deepEqual(outcomes, [{ kind: 'ok', duplicate: false }]);
      assert.deepEqual(fake.values('logs'), ['a', big, 'c']);
      const alone = fake.batches.find((b) => b.records.some((r) => r.value === big))!;
      assert.deepEqual(alone.records.map((r) => r.value), [big]);
    });

    it('refuses a record Kafka calls too large, alone in its request, as fatal for its chunk only (fault chunk)', async () => {
      const fake = new FakeKafka({ logs: 1 });
      fake.onSend = (b) => {
        if (b.records.some((r) => r.value.length > 3000)) throw protocolError('MESSAGE_TOO_LARGE');
      };
      const sink = await start(fake, { maxBatchBytes: 1024 });
      const [good, bad, after] = await sink.send([item(1, ['fine']), item(2, ['x', 'y'.repeat(4000)]), item(3, ['later'])]);
      assert.equal(fault(good), 'ok');
      assert.equal(fault(bad), 'fatal/chunk');
      assert.match(bad?.kind === 'fatal' ? bad.error.message : '', /record 1 \(file offset 2\).*too large.*max\.message\.bytes/);
      assert.equal(fault(after), 'ok');
      // at-least-once: records of the refused chunk in requests before the refused one reach Kafka (maybe twice).
      const values = fake.values('logs');
      assert.deepEqual(delivery === 'exactly-once' ? values : values.filter((v) => v !== 'x'), ['fine', 'later']);
    });

    it('calls a too-large request of several records a setting fault (maxBatchBytes above what the topic takes)', async () => {
      const fake = new FakeKafka({ logs: 1 });
      fake.onSend = (b) => {
        if (b.records.filter((r) => r.topic === 'logs').length > 1) throw protocolError('MESSAGE_TOO_LARGE');
      };
      const sink = await start(fake);
      const [o] = await sink.send([item(1, ['a', 'b', 'c'])]);
      assert.equal(fault(o), 'fatal/setting');
      assert.match(o?.kind === 'fatal' ? o.error.message : '', /kafka\.maxBatchBytes/);
    });

    it("refuses a chunk Kafka calls INVALID_TIMESTAMP as fatal for that chunk only, never a stall", async () => {
      const fake = new FakeKafka({ logs: 1 });
      fake.onSend = (b) => {
        if (b.records.some((r) => r.value === 'stale')) throw protocolError('INVALID_TIMESTAMP');
      };
      const sink = await start(fake);
      const outcomes = await sink.send([item(1, ['one']), item(2, ['stale']), item(3, ['three'])]);
      assert.deepEqual(outcomes.map(fault), ['ok', 'fatal/chunk', 'ok']);
      assert.deepEqual(fake.values('logs'), ['one', 'three']);
    });

    it('holds a chunk whose topic refuses writes (authorization) as a setting fault', async () => {
      const fake = new FakeKafka({ logs: 1, locked: 1 });
      fake.onSend = (b) => {
        if (b.records.some((r) => r.topic === 'locked')) throw protocolError('TOPIC_AUTHORIZATION_FAILED');
      };
      const sink = await start(fake);
      const outcomes = await sink.send([item(1, ['one']), item(2, ['two'], 'locked')]);
      assert.deepEqual(outcomes.map(fault), ['ok', 'fatal/setting']);
    });

    it('holds a chunk for a topic Kafka does not have as a setting fault', async () => {
      const fake = new FakeKafka({ logs: 1 });
      const sink = await start(fake);
      const outcomes = await sink.send([item(1, ['c'], 'missing'), item(2, ['d'])]);
      assert.deepEqual(outcomes.map(fault), ['fatal/setting', 'ok']);
    });
  });
}
