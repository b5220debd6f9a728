import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  encodeChunk,
  decodeChunk,
  decodeChunkHeader,
  chunkId,
  chunkFromRecords,
  MAX_RECORDS_PER_CHUNK,
  RecordFlag,
  type ChunkHeader,
  type RecordEntry,
} from '../../../shared/chunk/codec.js';
import { ChunkMalformedError, ChunkRecordLimitError, ChunkVersionError } from '../../../shared/errors.js';

function header(over: Partial<ChunkHeader> = {}): ChunkHeader {
  return {
    agentId: 'web-01',
    seq: 7,
    host: 'web-01.example',
    path: '/var/log/app/a.log',
    topic: 'app-logs',
    file: { dev: '2049', ino: '1234567', fingerprint: 'ab12' },
    offsetStart: 100,
    offsetEnd: 100,
    lineCount: 0,
    readAtMs: 1_700_000_000_000,
    ...over,
  };
}

/** Builds a chunk the way the tailer does: consecutive newline-terminated lines. */
function linesChunk(lines: Buffer[], offsetStart = 0, over: Partial<ChunkHeader> = {}): Buffer {
  const entries: RecordEntry[] = lines.map((l, i) => ({ gap: i === 0 ? 0 : 1, length: l.length, flags: 0 }));
  const consumed = lines.reduce((n, l) => n + l.length + 1, 0);
  return encodeChunk(header({ offsetStart, offsetEnd: offsetStart + consumed, lineCount: lines.length, ...over }), entries, lines);
}

describe('chunk codec', () => {
  it('round-trips lines with their file offsets', () => {
    const lines = [Buffer.from('first'), Buffer.from(''), Buffer.from('third line')];
    const decoded = decodeChunk(linesChunk(lines, 1000));
    assert.equal(decoded.header.seq, 7);
    assert.equal(decoded.header.lineCount, 3);
    assert.deepEqual(
      decoded.records.map((r) => [r.offset, r.value.toString()]),
      [
        [1000, 'first'],
        [1006, ''],
        [1007, 'third line'],
      ],
    );
    assert.equal(decoded.dataBytes, 15);
  });

  it('carries invalid UTF-8 and binary bytes unchanged', () => {
    const binary = Buffer.from([0xff, 0xfe, 0x00, 0xc3, 0x28, 0x0d, 0x80]);
    const decoded = decodeChunk(linesChunk([binary]));
    assert.deepEqual(decoded.records[0]!.value, binary);
  });

  it('keeps record flags and explicit gaps for split and truncated lines', () => {
    const entries: RecordEntry[] = [
      { gap: 0, length: 4, flags: RecordFlag.Truncated },
      { gap: 20, length: 3, flags: RecordFlag.Continues },
      { gap: 0, length: 2, flags: 0 },
    ];
    const buf = encodeChunk(header({ offsetStart: 0, offsetEnd: 30, lineCount: 3 }), entries, Buffer.from('aaaabbbcc'));
    const d = decodeChunk(buf);
    assert.deepEqual(
      d.records.map((r) => [r.offset, r.value.toString(), r.flags]),
      [
        [0, 'aaaa', RecordFlag.Truncated],
        [24, 'bbb', RecordFlag.Continues],
        [27, 'cc', 0],
      ],
    );
  });

  it('decodes records as columns over the chunk buffer itself (no copy), the same records as the objects', () => {
    const entries: RecordEntry[] = [
      { gap: 0, length: 4, flags: 0 },
      { gap: 20, length: 3, flags: RecordFlag.Continues },
      { gap: 0, length: 0, flags: 0 },
    ];
    const buf = encodeChunk(header({ offsetStart: 10, offsetEnd: 40, lineCount: 3 }), entries, Buffer.from('aaaabbb'));
    const d = decodeChunk(buf);
    const { data, spans, offsets, flags, flagged } = d.columns;
    assert.equal(d.count, 3);
    assert.equal(data.buffer, buf.buffer, 'the chunk buffer, not a copy');
    assert.deepEqual([...offsets], [10, 34, 37]);
    assert.deepEqual([...flags], [0, RecordFlag.Continues, 0]);
    assert.equal(flagged, true);
    const values = [0, 1, 2].map((i) => data.subarray(spans[2 * i], spans[2 * i]! + spans[2 * i + 1]!).toString());
    assert.deepEqual(values, ['aaaa', 'bbb', '']);
    assert.deepEqual(d.records.map((r) => [r.offset, r.value.toString(), r.flags]), [0, 1, 2].map((i) => [offsets[i], values[i], flags[i]]));
    assert.equal(decodeChunk(linesChunk([Buffer.from('x')])).columns.flagged, false);
  });

  it('makes the columns of a chunk built from separate records only when asked, as one copy', () => {
    const records = [
      { offset: 0, value: Buffer.from('ab'), flags: 0 },
      { offset: 2, value: Buffer.from('cde'), flags: RecordFlag.NoNewline },
    ];
    const c = chunkFromRecords(header({ offsetEnd: 5, lineCount: 2 }), records);
    assert.equal(c.records, records, 'the records as given');
    assert.equal(c.count, 2);
    assert.equal(c.dataBytes, 5);
    assert.equal(c.columns.data.toString(), 'abcde');
    assert.deepEqual([...c.columns.spans], [0, 2, 2, 3]);
    assert.deepEqual([...c.columns.offsets], [0, 2]);
    assert.equal(c.columns.flagged, true);
  });

  it('reads the header alone without touching the records', () => {
    const { header: h } = decodeChunkHeader(linesChunk([Buffer.from('x')]));
    assert.equal(chunkId(h.agentId, h.seq), 'web-01/7');
  });

  it('refuses to encode data that does not match the record lengths', () => {
    assert.throws(() => encodeChunk(header({ lineCount: 1 }), [{ gap: 0, length: 3, flags: 0 }], Buffer.from('ab')), RangeError);
  });

  it('rejects a chunk from a newer wire version with a version error', () => {
    const buf = linesChunk([Buffer.from('x')]);
    buf[4] = 9;
    assert.throws(() => decodeChunk(buf), ChunkVersionError);
  });

  it('rejects wrong magic, bad header JSON and invalid header fields with a message naming the field', () => {
    const good = linesChunk([Buffer.from('x')]);
    const wrongMagic = Buffer.from(good);
    wrongMagic[0] = 0x00;
    assert.throws(() => decodeChunk(wrongMagic), /wrong magic/);
    assert.throws(() => decodeChunk(linesChunk([Buffer.from('x')], 0, { topic: 'bad topic!' })), /header\.topic/);
    assert.throws(() => decodeChunk(linesChunk([Buffer.from('x')], 0, { seq: 0 })), /header\.seq/);
    assert.throws(() => decodeChunk(linesChunk([Buffer.from('x')], 0, { agentId: '../etc' })), /header\.agentId/);
    const badJson = Buffer.concat([good.subarray(0, 10), Buffer.from('{'.padEnd(good.readUInt32BE(6), ' ')), good.subarray(10 + good.readUInt32BE(6))]);
    assert.throws(() => decodeChunk(badJson), /not valid JSON/);
  });

  it('rejects records that run past header.offsetEnd', () => {
    const buf = encodeChunk(header({ offsetStart: 0, offsetEnd: 2, lineCount: 1 }), [{ gap: 0, length: 5, flags: 0 }], Buffer.from('abcde'));
    assert.throws(() => decodeChunk(buf), /past header\.offsetEnd/);
  });

  it('never throws anything but a chunk error on truncated or corrupted input', () => {
    const good = linesChunk([Buffer.from('alpha'), Buffer.from('beta'), Buffer.from('gamma')]);
    fc.assert(
      fc.property(
        fc.nat({ max: good.length }),
        fc.array(fc.tuple(fc.nat({ max: good.length - 1 }), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }),
        (cut, flips) => {
          const b = Buffer.from(good.subarray(0, cut));
          for (const [at, v] of flips) if (at < b.length) b[at] = v;
          try {
            decodeChunk(b);
          } catch (err) {
            assert.ok(err instanceof ChunkMalformedError || err instanceof ChunkVersionError, String(err));
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('round-trips arbitrary records', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 50 }), fc.nat({ max: 2 ** 40 }), (arrays, start) => {
        const lines = arrays.map((a) => Buffer.from(a));
        const d = decodeChunk(linesChunk(lines, start));
        assert.equal(d.records.length, lines.length);
        let off = start;
        d.records.forEach((r, i) => {
          assert.deepEqual(r.value, lines[i]);
          assert.equal(r.offset, off);
          off += lines[i]!.length + 1;
        });
      }),
      { numRuns: 300 },
    );
  });

  it('refuses a chunk of more than MAX_RECORDS_PER_CHUNK records with ChunkRecordLimitError before decoding a record', () => {
    const n = MAX_RECORDS_PER_CHUNK + 1;
    const entries: RecordEntry[] = Array.from({ length: n }, (_, i) => ({ gap: i === 0 ? 0 : 1, length: 0, flags: 0 }));
    const buf = encodeChunk(header({ lineCount: n, offsetEnd: 100 + n }), entries, Buffer.alloc(0));
    assert.throws(
      () => decodeChunk(buf),
      (err: unknown) => err instanceof ChunkRecordLimitError && err instanceof ChunkMalformedError && err.code === 'FERRY_CHUNK_MALFORMED' && err.records === n && err.limit === MAX_RECORDS_PER_CHUNK,
    );
    assert.throws(() => decodeChunkHeader(buf), ChunkRecordLimitError, 'the header alone already says too many');
    // A count field that lies beyond the cap while the header claims a small lineCount.
    const lying = Buffer.from(encodeChunk(header({ lineCount: 1, offsetEnd: 101 }), [{ gap: 0, length: 1, flags: 0 }], Buffer.from('x')));
    const countAt = 10 + lying.readUInt32BE(6);
    lying.writeUInt32BE(0xffffffff, countAt);
    assert.throws(() => decodeChunk(lying), ChunkRecordLimitError);
  });

  it('decodes a chunk of exactly MAX_RECORDS_PER_CHUNK records', () => {
    const n = MAX_RECORDS_PER_CHUNK;
    const entries: RecordEntry[] = Array.from({ length: n }, (_, i) => ({ gap: i === 0 ? 0 : 1, length: 0, flags: 0 }));
    assert.equal(decodeChunk(encodeChunk(header({ lineCount: n, offsetEnd: 100 + n }), entries, Buffer.alloc(0))).records.length, n);
  });
});
