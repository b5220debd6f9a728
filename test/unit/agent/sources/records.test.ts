import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { scanRecords, type ScanOptions } from '../../../../agent/sources/tail/records.js';
import { ChunkBuilder } from '../../../../agent/sources/tail/chunker.js';
import { checkFingerprint, fingerprintLength, fingerprintOf } from '../../../../agent/sources/tail/fingerprint.js';
import { MAX_RECORDS_PER_CHUNK, RecordFlag, decodeChunk, encodeChunk } from '../../../../shared/chunk/codec.js';
import { open, writeFile, appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../../../harness/temp.js';

interface Rec {
  offset: number;
  value: Buffer;
  flags: number;
}

/**
 * Drives scanRecords the way the tailer does: each window starts at the first unconsumed
 * byte and holds at most `window` bytes; the last pass flushes partial lines.
 */
function scanAll(file: Buffer, opts: ScanOptions, window: number): { recs: Rec[]; consumed: number } {
  const recs: Rec[] = [];
  const state = { skipping: false };
  let pos = 0;
  for (;;) {
    const end = Math.min(file.length, pos + window);
    const buf = Buffer.from(file.subarray(pos, end)); // a copy, like a read into a reused buffer
    const atEnd = end === file.length;
    const base = pos;
    let consumed = scanRecords(buf, 0, buf.length, opts, state, { flushPartial: atEnd, flushOpen: atEnd }, (b, s, e, flags) => {
      recs.push({ offset: base + s, value: Buffer.from(b.subarray(s, e)), flags });
    });
    if (consumed === 0 && buf.length === window) {
      consumed = scanRecords(buf, 0, buf.length, opts, state, { flushPartial: false, flushOpen: true }, (b, s, e, flags) => {
        recs.push({ offset: base + s, value: Buffer.from(b.subarray(s, e)), flags });
      });
    }
    pos += consumed;
    if (atEnd || consumed === 0) return { recs, consumed: pos };
  }
}

const lineBytes = fc.uint8Array({ maxLength: 90 }).map((a) => Buffer.from(a.map((b) => (b === 0x0a ? 0x0b : b))));

describe('record cutting (pure)', () => {
  it('turns any bytes, read in any window size, into the file lines with exact offsets; long lines split into pieces that join back', () => {
    fc.assert(
      fc.property(fc.array(lineBytes, { maxLength: 40 }), fc.boolean(), fc.integer({ min: 16, max: 64 }), fc.integer({ min: 0, max: 100 }), (lines, lastHasNewline, max, extra) => {
        const file = Buffer.concat(lines.map((l, i) => (i < lines.length - 1 || lastHasNewline ? Buffer.concat([l, Buffer.from('\n')]) : l)));
        const { recs, consumed } = scanAll(file, { maxLineBytes: max, longLines: 'split' }, 2 * max + 2 + extra);
        assert.equal(consumed, file.length);
        for (const r of recs) assert.ok(file.subarray(r.offset, r.offset + r.value.length).equals(r.value), 'each record is where its offset says');
        // Join Continues pieces back into lines.
        const joined: Buffer[] = [];
        let cur: Buffer[] = [];
        for (const r of recs) {
          cur.push(r.value);
          assert.ok(r.value.length <= max);
          if (!(r.flags & RecordFlag.Continues)) {
            joined.push(Buffer.concat(cur));
            cur = [];
          }
        }
        if (cur.length > 0) joined.push(Buffer.concat(cur));
        const want = lastHasNewline || lines.length === 0 ? lines : [...lines.slice(0, -1), ...(lines.at(-1)!.length > 0 ? [lines.at(-1)!] : [])];
        assert.deepEqual(joined.map((b) => b.toString('hex')), want.map((b) => b.toString('hex')));
      }),
      { numRuns: 300 },
    );
  });

  it('holds a partial last line (not consumed) unless told to flush it', () => {
    const buf = Buffer.from('one\ntwo\nthr');
    const got: string[] = [];
    const consumed = scanRecords(buf, 0, buf.length, { maxLineBytes: 100, longLines: 'split' }, { skipping: false }, { flushPartial: false, flushOpen: false }, (b, s, e) => got.push(b.toString('utf8', s, e)));
    assert.equal(consumed, 8);
    assert.deepEqual(got, ['one', 'two']);
  });

  it('truncates long lines, skipping their rest across windows, and remembers the skip in its state', () => {
    const state = { skipping: false };
    const got: Array<[string, number, boolean]> = [];
    const sink = (b: Buffer, s: number, e: number, flags: number, _c: number, skip: boolean): void => void got.push([b.toString('utf8', s, e), flags, skip]);
    const opts: ScanOptions = { maxLineBytes: 16, longLines: 'truncate' };
    const w1 = Buffer.from('a'.repeat(40));
    assert.equal(scanRecords(w1, 0, w1.length, opts, state, { flushPartial: false, flushOpen: false }, sink), 40);
    assert.equal(state.skipping, true);
    const w2 = Buffer.from('aaaa\nnext\n');
    assert.equal(scanRecords(w2, 0, w2.length, opts, state, { flushPartial: false, flushOpen: false }, sink), w2.length);
    assert.equal(state.skipping, false);
    assert.deepEqual(got, [['a'.repeat(16), RecordFlag.Truncated, true], ['next', 0, false]]);
  });

  it('joins multiline records up to maxLines and holds an open record until the next start line or a flush', () => {
    const opts: ScanOptions = { maxLineBytes: 1000, longLines: 'split', multiline: { startPattern: /^\S/, maxLines: 10 } };
    const buf = Buffer.from('E1\n  a\n  b\nE2\n  c\n');
    const got: string[] = [];
    const consumed = scanRecords(buf, 0, buf.length, opts, { skipping: false }, { flushPartial: false, flushOpen: false }, (b, s, e) => got.push(b.toString('utf8', s, e)));
    assert.deepEqual(got, ['E1\n  a\n  b']);
    assert.equal(consumed, 11, 'the open record E2 is not consumed');
    const again: string[] = [];
    scanRecords(buf, 11, buf.length, opts, { skipping: false }, { flushPartial: false, flushOpen: true }, (b, s, e, flags) => again.push(`${b.toString('utf8', s, e)}|${flags}`));
    assert.deepEqual(again, [`E2\n  c|${RecordFlag.Multiline}`]);
  });
});

describe('chunk builder', () => {
  it('describes records with gaps from offsetStart that the chunk codec decodes back to the file offsets', () => {
    const b = new ChunkBuilder(1024, 100);
    const src = Buffer.from('hello\nworld\n');
    b.add(src, 0, 5, 100, 0, 106, false, 1);
    b.add(src, 6, 11, 106, 0, 112, false, 1);
    const bytes = encodeChunk(
      { agentId: 'a', seq: 1, host: 'h', path: '/p', topic: 't', file: { dev: '1', ino: '2', fingerprint: '0:x' }, offsetStart: b.offsetStart, offsetEnd: b.offsetEnd, lineCount: 2, readAtMs: 1 },
      b.entries,
      b.data(),
    );
    const d = decodeChunk(bytes);
    assert.deepEqual(d.records.map((r) => [r.offset, r.value.toString()]), [[100, 'hello'], [106, 'world']]);
    assert.equal(d.header.offsetEnd, 112);
    b.reset(b.offsetEnd);
    assert.equal(b.pending, false);
    assert.equal(b.offsetStart, 112);
  });

  it('says a record does not fit once the chunk (records plus their index entries) would pass maxBytes, but always takes a first record', () => {
    const b = new ChunkBuilder(20, 0);
    assert.ok(b.fits(0, 50));
    b.add(Buffer.alloc(8), 0, 8, 0, 0, 9, false, 1);
    assert.equal(b.encodedBytes, 8 + 3);
    assert.ok(!b.fits(9, 7), '11 + 3 (entry) + 7 passes 20');
    assert.ok(b.fits(9, 6));
  });

  it('cuts a chunk of empty lines by their index size, so that no number of them makes a chunk larger than maxBytes', () => {
    const b = new ChunkBuilder(1024, 0);
    const nl = Buffer.from('\n');
    let offset = 0;
    while (b.fits(offset, 0)) {
      b.add(nl, 0, 0, offset, 0, offset + 1, false, 1);
      offset++;
    }
    assert.equal(b.entries.length, 341);
    const header = { agentId: 'a', seq: 1, host: 'h', path: '/p', topic: 't', file: { dev: '1', ino: '2', fingerprint: '0:x' }, offsetStart: 0, offsetEnd: offset, lineCount: b.entries.length, readAtMs: 1 };
    const encoded = encodeChunk(header, b.entries, b.data());
    assert.equal(encoded.length, 14 + Buffer.byteLength(JSON.stringify(header)) + b.encodedBytes);
    assert.ok(b.encodedBytes <= 1024);
  });

  it('cuts a chunk at MAX_RECORDS_PER_CHUNK records, the most a gateway decodes, however small the lines are', () => {
    const b = new ChunkBuilder(8 * 1024 * 1024, 0);
    const nl = Buffer.from('\n');
    let offset = 0;
    while (b.fits(offset, 0) && !b.full) {
      b.add(nl, 0, 0, offset, 0, offset + 1, false, 1);
      offset++;
    }
    assert.equal(b.entries.length, MAX_RECORDS_PER_CHUNK);
    assert.ok(b.full);
    assert.ok(b.encodedBytes < b.maxBytes, 'cut by count, not by bytes');
    const header = { agentId: 'a', seq: 1, host: 'h', path: '/p', topic: 't', file: { dev: '1', ino: '2', fingerprint: '0:x' }, offsetStart: 0, offsetEnd: offset, lineCount: b.entries.length, readAtMs: 1 };
    assert.equal(decodeChunk(encodeChunk(header, b.entries, b.data())).records.length, MAX_RECORDS_PER_CHUNK);
  });
});

describe('fingerprints', () => {
  it('cover the first bytes, grow with a short file, and recognise the same file by its stored length', async () => {
    await using dir = tempDir('fp');
    const p = join(dir.path, 'f');
    await writeFile(p, 'short');
    const fh = await open(p, 'r');
    try {
      const scratch = Buffer.alloc(32);
      const first = checkFingerprint(fh.fd, '0:', 32, scratch).fingerprint;
      assert.equal(fingerprintLength(first), 5);
      await appendFile(p, ' and longer than thirty-two bytes in the end');
      const c = checkFingerprint(fh.fd, first, 32, scratch);
      assert.equal(c.same, true);
      assert.equal(fingerprintLength(c.fingerprint), 32);
      await writeFile(p, 'other content entirely, same inode');
      assert.equal(checkFingerprint(fh.fd, c.fingerprint, 32, scratch).same, false);
      assert.equal(fingerprintOf(Buffer.from('abc'), 0), fingerprintOf(Buffer.alloc(0), 0));
    } finally {
      await fh.close();
    }
  });
});
