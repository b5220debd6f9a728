// Per-topic state in the Kafka sink stays bounded whatever topic names arrive: caches are LRUs
// with a size cap, and metric labels name only topics Kafka has, at most a fixed number of them.
import { describe, it, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { FakeKafka, fakeSink } from './fake-driver.js';
import { testChunk } from './fixtures.js';
import { CappedLabels, LruMap } from '../../../../gateway/sinks/kafka/bounded.js';
import { createRegistry, type Registry } from '../../../../shared/metrics.js';
import type { KafkaSink } from '../../../../gateway/sinks/kafka/sink.js';

const sinks: KafkaSink[] = [];
afterEach(async () => {
  for (const s of sinks.splice(0)) await s.stop(Date.now() + 1000);
});

async function topicLabels(registry: Registry): Promise<Set<string>> {
  const m = await registry.getSingleMetric('ferry_gateway_kafka_chunks_total')!.get();
  return new Set(m.values.map((v) => String(v.labels.topic)));
}

describe('LruMap', () => {
  it('keeps at most its cap, dropping the least recently used entry', () => {
    const m = new LruMap<string, number>(2);
    m.set('a', 1);
    m.set('b', 2);
    assert.equal(m.get('a'), 1); // a is now the most recent
    m.set('c', 3);
    assert.equal(m.size, 2);
    assert.equal(m.get('b'), undefined);
    assert.equal(m.get('a'), 1);
    assert.equal(m.get('c'), 3);
    m.set('a', 10);
    assert.equal(m.size, 2);
    assert.equal(m.peek('a'), 10);
  });
});

describe('CappedLabels', () => {
  it('labels admitted values as themselves up to the cap, everything else as _other', () => {
    const l = new CappedLabels(2);
    assert.equal(l.label('missing', false), '_other');
    assert.equal(l.label('a', true), 'a');
    assert.equal(l.label('b', true), 'b');
    assert.equal(l.label('c', true), '_other');
    assert.equal(l.label('a', false), 'a', 'a value labelled once keeps its label');
    assert.equal(l.size, 2);
  });
});

describe('Kafka sink metric labels', () => {
  it('labels chunks for topics Kafka does not have as _other, not by their names', async () => {
    const fake = new FakeKafka({ logs: 1 });
    const registry = createRegistry({ defaultMetrics: false });
    const sink = await fakeSink(fake, {}, registry);
    sinks.push(sink);
    const names = Array.from({ length: 20 }, (_, i) => `random-${i}`);
    const outcomes = await sink.send([...names, 'logs'].map((topic, i) => ({ chunk: testChunk({ seq: i + 1, topic, lines: ['x'] }), source: 'nats' })));
    assert.deepEqual(outcomes.map((o) => o.kind), [...names.map(() => 'fatal'), 'ok']);
    assert.deepEqual([...(await topicLabels(registry))].sort(), ['_other', 'logs']);
  });

  it('labels at most 1000 distinct topics, the rest under _other', async () => {
    const topics = Object.fromEntries(Array.from({ length: 1010 }, (_, i) => [`t${i}`, 1]));
    const fake = new FakeKafka(topics);
    const registry = createRegistry({ defaultMetrics: false });
    const sink = await fakeSink(fake, { delivery: 'at-least-once' }, registry);
    sinks.push(sink);
    const outcomes = await sink.send(Object.keys(topics).map((topic, i) => ({ chunk: testChunk({ seq: i + 1, topic, lines: ['x'] }), source: 'nats' })));
    assert.ok(outcomes.every((o) => o.kind === 'ok'));
    const labels = await topicLabels(registry);
    assert.equal(labels.size, 1001);
    assert.ok(labels.has('_other'));
    const records = await registry.getSingleMetric('ferry_gateway_kafka_records_total')!.get();
    assert.equal(records.values.reduce((n, v) => n + v.value, 0), 1010, 'every record is counted');
    assert.equal(records.values.length, 1001);
  });
});
