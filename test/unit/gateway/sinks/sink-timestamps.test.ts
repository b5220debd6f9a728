// Record timestamps come from the agent's clock (readAtMs): the sink keeps them within a bounded
// skew of the gateway's clock, and counts the ones it replaces.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKafka, fakeSink } from './fake-driver.js';
import { testChunk } from './fixtures.js';
import { recordTimestamp } from '../../../../gateway/sinks/kafka/records.js';
import { createRegistry } from '../../../../shared/metrics.js';
import type { KafkaSink } from '../../../../gateway/sinks/kafka/sink.js';

const HOUR = 3600_000;
const DAY = 24 * HOUR;
const sinks: KafkaSink[] = [];
afterEach(async () => {
  for (const s of sinks.splice(0)) await s.stop(Date.now() + 1000);
});

describe('recordTimestamp', () => {
  const limits = { maxTimestampSkewMs: HOUR, maxTimestampAgeMs: 7 * DAY };
  const now = 1_800_000_000_000;

  it('keeps a read time within the skew ahead and the age behind the gateway clock', () => {
    assert.deepEqual(recordTimestamp(now, now, limits), { timestampMs: now });
    assert.deepEqual(recordTimestamp(now + HOUR, now, limits), { timestampMs: now + HOUR });
    assert.deepEqual(recordTimestamp(now - 7 * DAY, now, limits), { timestampMs: now - 7 * DAY });
  });

  it("replaces a read time further ahead or behind with the gateway's now, saying which", () => {
    assert.deepEqual(recordTimestamp(now + HOUR + 1, now, limits), { timestampMs: now, clamped: 'future' });
    assert.deepEqual(recordTimestamp(now - 7 * DAY - 1, now, limits), { timestampMs: now, clamped: 'past' });
    assert.deepEqual(recordTimestamp(0, now, limits), { timestampMs: now, clamped: 'past' });
  });
});

describe('Kafka sink record timestamps', () => {
  it("produces an out-of-bounds read time as the gateway's now and counts it, keeping the others", async () => {
    const fake = new FakeKafka({ logs: 1 });
    const registry = createRegistry({ defaultMetrics: false });
    const sink = await fakeSink(fake, { delivery: 'at-least-once' }, registry);
    sinks.push(sink);
    const before = Date.now();
    const chunks = [
      { seq: 1, readAtMs: before - 30 * 60_000, lines: ['recent'] },
      { seq: 2, readAtMs: before + 3 * HOUR, lines: ['future'] },
      { seq: 3, readAtMs: 1_000_000_000_000, lines: ['ancient'] },
    ].map((s) => ({ chunk: testChunk({ ...s, topic: 'logs' }), source: 'nats' }));
    const outcomes = await sink.send(chunks);
    const after = Date.now();
    assert.deepEqual(outcomes.map((o) => o.kind), ['ok', 'ok', 'ok']);
    const ts = new Map(fake.committed('logs').map((r) => [r.value, Number(r.timestamp)]));
    assert.equal(ts.get('recent'), before - 30 * 60_000);
    for (const v of ['future', 'ancient']) assert.ok(ts.get(v)! >= before && ts.get(v)! <= after, `${v}: ${ts.get(v)} is the gateway's now`);
    const metric = await registry.getSingleMetric('ferry_gateway_kafka_timestamps_clamped_total')!.get();
    const by = Object.fromEntries(metric.values.map((v) => [String(v.labels.direction), v.value]));
    assert.deepEqual(by, { future: 1, past: 1 });
  });
});
