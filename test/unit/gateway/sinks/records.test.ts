import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { RecordFlag } from '../../../../shared/chunk/codec.js';
import { HEADER_NAMES } from '../../../../gateway/config.js';
import { Partitioners, type PartitionMetadata } from 'kafkajs';
import { RequestPacker, flagsHeader, type ChunkRecords, type ProduceRequest } from '../../../../gateway/sinks/kafka/records.js';
import { buildMessages, chunkPartitioner } from '../../../../gateway/sinks/kafka/kafkajs/messages.js';
import { lineOffsets, testChunk } from './fixtures.js';

const ALL = { headers: [...HEADER_NAMES], key: 'none' as const };

describe('buildMessages', () => {
  it('makes one message per line whose value is a view of the chunk bytes, not a copy', () => {
    const lines = [Buffer.from('first'), Buffer.from([0, 0xff, 0xfe, 0x80]), Buffer.alloc(0)];
    const chunk = testChunk({ seq: 7, topic: 't', lines });
    const { messages } = buildMessages(chunk, ALL);
    assert.equal(messages.length, 3);
    for (const [i, m] of messages.entries()) {
      assert.ok(Buffer.isBuffer(m.value));
      assert.deepEqual(m.value, lines[i]);
      assert.equal((m.value as Buffer).buffer, chunk.records[i]!.value.buffer, 'value shares the chunk memory');
    }
  });

  it('sets the ferry headers: agent, host, path, the line offset and the chunk seq', () => {
    const lines = ['a', 'bb', 'ccc'];
    const chunk = testChunk({ agentId: 'web-01', host: 'web-01.example', path: '/var/log/x.log', seq: 42, topic: 't', lines, offsetStart: 100 });
    const { messages } = buildMessages(chunk, ALL);
    const offsets = lineOffsets(lines, 100);
    for (const [i, m] of messages.entries()) {
      const h = m.headers!;
      assert.equal(String(h['ferry.agent']), 'web-01');
      assert.equal(String(h['ferry.host']), 'web-01.example');
      assert.equal(String(h['ferry.path']), '/var/log/x.log');
      assert.equal(String(h['ferry.offset']), String(offsets[i]));
      assert.equal(String(h['ferry.seq']), '42');
      assert.equal(h['ferry.flags'], undefined, 'no flags header on a plain line');
    }
  });

  it('carries only the configured headers', () => {
    const chunk = testChunk({ seq: 1, topic: 't', lines: ['x'] });
    const [m] = buildMessages(chunk, { headers: ['offset'], key: 'none' }).messages;
    assert.deepEqual(Object.keys(m!.headers!), ['ferry.offset']);
  });

  it('adds ferry.flags only to records that have flags, naming them', () => {
    const chunk = testChunk({ seq: 1, topic: 't', lines: ['a', 'b', 'c'], flags: [0, RecordFlag.Continues | RecordFlag.Truncated, RecordFlag.NoNewline] });
    const { messages } = buildMessages(chunk, ALL);
    assert.equal(messages[0]!.headers!['ferry.flags'], undefined);
    assert.equal(messages[1]!.headers!['ferry.flags'], 'split,truncated');
    assert.equal(messages[2]!.headers!['ferry.flags'], 'no-newline');
  });

  it('names unknown flag bits in hex instead of dropping them', () => {
    assert.equal(flagsHeader(RecordFlag.Multiline | 0x40), 'multiline,0x40');
  });

  it('keys records by host or path when asked, and leaves the key unset otherwise', () => {
    const chunk = testChunk({ seq: 1, topic: 't', lines: ['x'], host: 'h1', path: '/p' });
    assert.equal(buildMessages(chunk, { headers: [], key: 'none' }).messages[0]!.key, undefined);
    assert.equal(String(buildMessages(chunk, { headers: [], key: 'host' }).messages[0]!.key), 'h1');
    assert.equal(String(buildMessages(chunk, { headers: [], key: 'path' }).messages[0]!.key), '/p');
  });

  it('stamps records with the time the agent read them', () => {
    const chunk = testChunk({ seq: 1, topic: 't', lines: ['x'], readAtMs: 1234567 });
    assert.equal(buildMessages(chunk, ALL).messages[0]!.timestamp, '1234567');
  });

  it('estimates each record at least at its value, key and header bytes', () => {
    const chunk = testChunk({ seq: 9, topic: 't', lines: ['hello', 'x'.repeat(300)], path: '/a/b' });
    const { messages, sizes, bytes } = buildMessages(chunk, { headers: [...HEADER_NAMES], key: 'path' });
    let sum = 0;
    for (const [i, m] of messages.entries()) {
      let raw = (m.value as Buffer).length + (m.key ? Buffer.byteLength(m.key) : 0);
      for (const [k, v] of Object.entries(m.headers!)) raw += k.length + Buffer.byteLength(v as string | Buffer);
      assert.ok(sizes[i]! >= raw, `size ${sizes[i]} >= raw ${raw}`);
      sum += sizes[i]!;
    }
    assert.equal(bytes, sum);
  });
});

/** One record of `size` bytes whose value is its number, as the packer sees it. */
function one(topic: string, size: number, n: number): ChunkRecords {
  return { topic, count: 1, sizes: [size], bytes: size, valueBytes: 0, timestampMs: 0, given: [{ key: null, value: Buffer.from(String(n)) }] };
}

/** topic -> record values, of one request. */
function contents(req: ProduceRequest): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const seg of req.segments) {
    const list = out.get(seg.records.topic) ?? [];
    for (let i = seg.from; i < seg.to; i++) list.push(seg.records.given![i]!.value.toString());
    out.set(seg.records.topic, list);
  }
  return out;
}

describe('RequestPacker', () => {
  it('keeps every request under the byte and record limits, in order, with nothing lost', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.integer({ min: 1, max: 3000 })), { minLength: 1, maxLength: 300 }),
        fc.integer({ min: 4000, max: 20000 }),
        fc.integer({ min: 1, max: 50 }),
        (items, maxBatchBytes, maxBatchRecords) => {
          const packer = new RequestPacker({ maxBatchBytes, maxBatchRecords });
          let lastIdx = 0;
          for (const [i, [topic, size]] of items.entries()) {
            const idx = packer.add(one(topic, size, i), 0);
            assert.ok(idx >= lastIdx, 'requests only move forward');
            lastIdx = idx;
          }
          const seen: number[] = [];
          const perTopic = new Map<string, number[]>();
          for (const req of packer.requests) {
            assert.ok(req.records <= maxBatchRecords);
            assert.ok(req.records === 1 || req.bytes <= maxBatchBytes, `request of ${req.bytes} bytes`);
            for (const [topic, values] of contents(req)) {
              for (const v of values) {
                const n = Number(v);
                seen.push(n);
                const list = perTopic.get(topic) ?? [];
                list.push(n);
                perTopic.set(topic, list);
              }
            }
          }
          assert.equal(seen.length, items.length);
          for (const list of perTopic.values()) assert.deepEqual(list, [...list].sort((x, y) => x - y), 'per-topic order kept');
        },
      ),
    );
  });

  it('gives a message that alone exceeds the limit a request of its own', () => {
    const packer = new RequestPacker({ maxBatchBytes: 1000, maxBatchRecords: 100 });
    packer.add(one('t', 10, 1), 0);
    packer.add(one('t', 5000, 2), 0);
    packer.add(one('t', 10, 3), 0);
    assert.equal(packer.requests.length, 3);
    assert.deepEqual(contents(packer.requests[1]!).get('t'), ['2']);
  });
});

describe('chunkPartitioner', () => {
  const partitionMetadata: PartitionMetadata[] = [0, 1, 2, 3, 4, 5].map((partitionId) => ({ partitionErrorCode: 0, partitionId, leader: 1, replicas: [1], isr: [1], offlineReplicas: [] }));

  it('sends every record of an unkeyed chunk to one partition, and spreads chunks over partitions', () => {
    const partition = chunkPartitioner();
    const seen = new Set<number>();
    for (let seq = 1; seq <= 30; seq++) {
      const { messages } = buildMessages(testChunk({ seq, topic: 't', lines: ['a', 'b', 'c', 'd'] }), ALL);
      const ps = new Set(messages.map((message) => partition({ topic: 't', partitionMetadata, message })));
      assert.equal(ps.size, 1, `chunk ${seq} in one partition`);
      seen.add([...ps][0]!);
    }
    assert.ok(seen.size > 1, 'chunks go to several partitions');
  });

  it('keeps kafkajs\' default partition for keyed records', () => {
    const partition = chunkPartitioner();
    const base = Partitioners.DefaultPartitioner();
    for (const path of ['/a.log', '/var/log/b.log', '/x/y/z']) {
      const { messages } = buildMessages(testChunk({ seq: 1, topic: 't', lines: ['a', 'b'], path }), { headers: [], key: 'path' });
      for (const message of messages) {
        assert.equal(partition({ topic: 't', partitionMetadata, message }), base({ topic: 't', partitionMetadata, message: { key: path, value: null } }));
      }
    }
  });
});
