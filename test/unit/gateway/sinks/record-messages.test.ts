// Message building for the produce API's records (SinkChunk.records): exactly the given keys,
// headers and partitions, and partitioning of them by chunkPartitioner.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { Partitioners, type Message, type PartitionMetadata } from 'kafkajs';
import { RequestPacker, givenRecords, estimateRecordBytes, maxExplicitPartition, partitionOutOfRange } from '../../../../gateway/sinks/kafka/records.js';
import { buildRecordMessages, chunkPartitioner } from '../../../../gateway/sinks/kafka/kafkajs/messages.js';
import type { SinkRecord } from '../../../../gateway/sinks/sink.js';
import { KafkaError } from '../../../../shared/errors.js';

function metadata(n: number): PartitionMetadata[] {
  return Array.from({ length: n }, (_, partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 1, replicas: [1], isr: [1], offlineReplicas: [] }));
}

const recordArb: fc.Arbitrary<SinkRecord> = fc.record(
  {
    key: fc.option(fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)), { nil: null }),
    value: fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    headers: fc.dictionary(fc.string({ minLength: 1, maxLength: 20 }), fc.uint8Array({ maxLength: 50 }).map((a) => Buffer.from(a)), { maxKeys: 5 }),
    partition: fc.integer({ min: 0, max: 11 }),
  },
  { requiredKeys: ['key', 'value'] },
);

describe('buildRecordMessages', () => {
  it('makes one message per record with exactly its key, headers and partition, and no ferry.* headers', () => {
    const records: SinkRecord[] = [
      { key: Buffer.from('user-1'), value: Buffer.from('{"a":1}'), headers: { trace: Buffer.from('abc'), bin: Buffer.from([0, 0xff]) }, partition: 2 },
      { key: null, value: Buffer.from([0xc3, 0x28]) },
      { key: Buffer.from('k'), value: Buffer.alloc(0), headers: {} },
    ];
    const { messages } = buildRecordMessages(records, 1_700_000_000_123);
    assert.equal(messages.length, 3);
    const [a, b, c] = messages as [Message, Message, Message];
    assert.equal(a.key, records[0]!.key, 'the key is the caller\'s Buffer, not a copy');
    assert.equal(a.value, records[0]!.value);
    assert.equal(a.partition, 2);
    assert.deepEqual(Object.keys(a.headers!), ['trace', 'bin']);
    assert.deepEqual(a.headers!.bin, Buffer.from([0, 0xff]));
    assert.equal(b.key, undefined, 'no key when the record has none');
    assert.equal(b.partition, undefined, 'no partition when the record names none');
    assert.equal(b.headers, undefined, 'no headers at all when the record has none');
    assert.equal(c.key, records[2]!.key);
    assert.deepEqual(c.value, Buffer.alloc(0));
    for (const m of messages) {
      assert.equal(m.timestamp, '1700000000123', 'stamped with the request time');
      for (const name of Object.keys(m.headers ?? {})) assert.ok(!name.startsWith('ferry.'), `no ferry header ${name}`);
    }
  });

  it('keeps every record\'s key, value, headers and partition, and sizes them at least at their bytes', () => {
    fc.assert(
      fc.property(fc.array(recordArb, { minLength: 1, maxLength: 30 }), (records) => {
        const { messages, sizes, bytes, valueBytes } = buildRecordMessages(records, 1);
        assert.equal(messages.length, records.length);
        let sum = 0;
        let values = 0;
        for (const [i, r] of records.entries()) {
          const m = messages[i]!;
          assert.equal(m.value, r.value);
          assert.equal(m.key ?? null, r.key);
          assert.equal(m.partition, r.partition);
          assert.deepEqual(m.headers, r.headers);
          let raw = r.value.length + (r.key?.length ?? 0);
          for (const [name, v] of Object.entries(r.headers ?? {})) raw += Buffer.byteLength(name) + v.length;
          assert.ok(sizes[i]! >= raw, `size ${sizes[i]} >= raw ${raw}`);
          sum += sizes[i]!;
          values += r.value.length;
        }
        assert.equal(bytes, sum);
        assert.equal(valueBytes, values);
        assert.ok(estimateRecordBytes(records) >= bytes - records.length * 24, 'the flush estimate is not far below the built size');
      }),
    );
  });

  it('packs records with their keys and headers into requests under the byte limit', () => {
    const records: SinkRecord[] = Array.from({ length: 200 }, (_, i) => ({
      key: Buffer.from(`key-${i}`),
      value: Buffer.alloc(100, 0x41),
      headers: { h: Buffer.alloc(200, 0x42) },
    }));
    const packer = new RequestPacker({ maxBatchBytes: 10_000, maxBatchRecords: 1000 });
    packer.addAll(givenRecords('t', records, 1));
    assert.ok(packer.requests.length >= 6, `${packer.requests.length} requests: the header bytes count`);
    for (const req of packer.requests) assert.ok(req.bytes <= 10_000);
  });
});

describe('partition checks', () => {
  it('names the first record whose partition the topic does not have, and the topic\'s partitions', () => {
    const records: SinkRecord[] = [
      { key: null, value: Buffer.from('a'), partition: 1 },
      { key: null, value: Buffer.from('b') },
      { key: null, value: Buffer.from('c'), partition: 3 },
    ];
    assert.equal(partitionOutOfRange(records, 't', 4), undefined);
    assert.deepEqual(partitionOutOfRange(records, 't', 3), { index: 2, message: 'records[2].partition 3 is out of range: topic "t" has 3 partitions (0-2)' });
    assert.match(partitionOutOfRange(records, 'one', 1)!.message, /records\[0\]\.partition 1 is out of range: topic "one" has 1 partition \(0\)/);
    assert.equal(maxExplicitPartition(records), 3);
    assert.equal(maxExplicitPartition([{ key: null, value: Buffer.from('x') }]), -1);
  });

  it('refuses a partition that is not a non-negative integer whatever the topic', () => {
    for (const partition of [-1, 1.5, Number.NaN]) {
      const r = partitionOutOfRange([{ key: null, value: Buffer.from('x'), partition }], 't', Infinity);
      assert.match(r?.message ?? '', /records\[0\]\.partition .* is not a partition number/);
    }
  });
});

describe('chunkPartitioner with produce-API records', () => {
  const partitionMetadata = metadata(6);

  it('sends a record with an explicit partition there, whatever its key', () => {
    const partition = chunkPartitioner();
    const records: SinkRecord[] = [0, 5, 3, 3].map((p, i) => ({ key: i % 2 === 0 ? Buffer.from(`k${i}`) : null, value: Buffer.from('v'), partition: p }));
    const { messages } = buildRecordMessages(records, 1);
    assert.deepEqual(
      messages.map((message) => partition({ topic: 't', partitionMetadata, message })),
      [0, 5, 3, 3],
    );
  });

  it('partitions keyed records by their own key with kafkajs\' default (Java-compatible) choice', () => {
    const partition = chunkPartitioner();
    const base = Partitioners.DefaultPartitioner();
    const keys = Array.from({ length: 40 }, (_, i) => `user-${i}`);
    const { messages } = buildRecordMessages(keys.map((k) => ({ key: Buffer.from(k), value: Buffer.from('v') })), 1);
    const chosen = messages.map((message) => partition({ topic: 't', partitionMetadata, message }));
    for (const [i, k] of keys.entries()) {
      assert.equal(chosen[i], base({ topic: 't', partitionMetadata, message: { key: k, value: null } }), `key ${k}`);
    }
    assert.ok(new Set(chosen).size > 1, 'records of one request with different keys go to different partitions');
  });

  it('keeps the unkeyed records of one request in one partition, and spreads requests over partitions', () => {
    const partition = chunkPartitioner();
    const seen = new Set<number>();
    for (let req = 0; req < 30; req++) {
      const records: SinkRecord[] = Array.from({ length: 5 }, (_, i) => ({ key: null, value: Buffer.from(`r${req}-${i}`) }));
      const { messages } = buildRecordMessages(records, 1);
      const ps = new Set(messages.map((message) => partition({ topic: 't', partitionMetadata, message })));
      assert.equal(ps.size, 1, `request ${req} in one partition`);
      seen.add([...ps][0]!);
    }
    assert.ok(seen.size > 1, 'requests go to several partitions');
  });

  it('throws for a partition missing from the producer\'s metadata instead of letting kafkajs drop the record', () => {
    const partition = chunkPartitioner();
    const [message] = buildRecordMessages([{ key: null, value: Buffer.from('v'), partition: 6 }], 1).messages;
    assert.throws(
      () => partition({ topic: 'six', partitionMetadata, message: message! }),
      (err: unknown) => err instanceof KafkaError && /partition 6 of topic "six" is not in the producer's metadata \(6 partitions\)/.test(err.message),
    );
  });
});
