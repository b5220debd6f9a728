import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { agentConfigSchema } from '../../../agent/config.js';
import {
  CHUNK_HEADER_ROOM_BYTES,
  NATS_DEFAULT_MAX_PAYLOAD_BYTES,
  chunkLimits,
  configuredMaxChunkBytes,
  learnedLimitMeta,
  limitWarnings,
  natsMaxChunkBytes,
  startingMaxChunkBytes,
} from '../../../agent/limits.js';
import { MAX_RECORD_BYTES, MAX_RECORD_ENTRY_BYTES, encodeChunk } from '../../../shared/chunk/codec.js';

function config(over: Record<string, unknown> = {}, input: Record<string, unknown> = {}) {
  return agentConfigSchema.parse({ inputs: [{ paths: ['/x/*.log'], topic: 't', ...input }], transport: { nats: { servers: ['nats://127.0.0.1:4222'] } }, ...over });
}

describe('record and chunk sizing', () => {
  it('with default settings cuts records of at most 1 MiB - 16 KiB and 256 KiB chunks, which fit NATS and Kafka defaults', () => {
    const c = config();
    const max = configuredMaxChunkBytes(c);
    assert.equal(max, NATS_DEFAULT_MAX_PAYLOAD_BYTES - 512);
    const l = chunkLimits(c.inputs[0]!.maxLineBytes, c.chunk.maxBytes, max);
    assert.equal(l.recordBytes, MAX_RECORD_BYTES);
    assert.equal(MAX_RECORD_BYTES, 1024 * 1024 - 16 * 1024);
    assert.equal(l.chunkBytes, 256 * 1024);
    // A chunk holding one record of the largest size, from a file with a long path, fits the default max_payload.
    const header = { agentId: 'a'.repeat(128), seq: Number.MAX_SAFE_INTEGER, host: 'h'.repeat(255), path: `/${'p'.repeat(4000)}`, topic: 't'.repeat(249), file: { dev: '18446744073709551615', ino: '18446744073709551615', fingerprint: `65536:${'f'.repeat(32)}` }, offsetStart: Number.MAX_SAFE_INTEGER - 2 * MAX_RECORD_BYTES, offsetEnd: Number.MAX_SAFE_INTEGER, lineCount: 1, readAtMs: Date.now() };
    const bytes = encodeChunk(header, [{ gap: MAX_RECORD_BYTES, length: l.recordBytes, flags: 1 }], Buffer.alloc(l.recordBytes));
    assert.ok(bytes.length <= max, `${bytes.length} bytes do not fit ${max}`);
  });

  it('follows a smaller transport limit: records and chunks leave room for the header', () => {
    const max = natsMaxChunkBytes(64 * 1024);
    const l = chunkLimits(MAX_RECORD_BYTES, 256 * 1024, max);
    assert.equal(l.chunkBytes, max - CHUNK_HEADER_ROOM_BYTES);
    assert.equal(l.recordBytes, max - CHUNK_HEADER_ROOM_BYTES - MAX_RECORD_ENTRY_BYTES);
    assert.equal(chunkLimits(1000, 256 * 1024, max).recordBytes, 1000, 'a smaller maxLineBytes is kept');
    assert.equal(chunkLimits(100, 4096, 100).recordBytes, 100, 'never more than maxLineBytes, however small the transport');
    assert.equal(chunkLimits(MAX_RECORD_BYTES, 4096, 100).chunkBytes, 1024, 'a tiny transport limit is not followed below 1 KiB chunks');
  });

  it('starts with the NATS limit last learned, kept in the spool meta, else the default; HTTP uses its setting', () => {
    const nats = config();
    assert.equal(startingMaxChunkBytes(nats, undefined), natsMaxChunkBytes(NATS_DEFAULT_MAX_PAYLOAD_BYTES));
    assert.equal(startingMaxChunkBytes(nats, learnedLimitMeta('nats', 60_000)), 60_000);
    assert.equal(startingMaxChunkBytes(nats, 'not json'), natsMaxChunkBytes(NATS_DEFAULT_MAX_PAYLOAD_BYTES));
    const http = config({ transport: { http: { url: 'http://gw:8080', maxChunkBytes: '2MiB' } } });
    assert.equal(startingMaxChunkBytes(http, learnedLimitMeta('nats', 60_000)), 2 * 1024 * 1024);
  });

  it('warns about settings the transport or Kafka cannot take, naming the key, and not about the defaults', () => {
    assert.deepEqual(limitWarnings(config()), []);
    const w = limitWarnings(config({ chunk: { maxBytes: '4MiB' } }, { maxLineBytes: '2MiB', longLines: 'truncate' }));
    assert.deepEqual(w.map((x) => x.path), ['chunk.maxBytes', 'inputs[0].maxLineBytes']);
    assert.match(w[0]!.message, /do not fit NATS's default max_payload .*chunks are cut at \d+ bytes/);
    assert.match(w[1]!.message, /Kafka's default message\.max\.bytes.*truncated at 1032192 bytes/);
    const http = limitWarnings(config({ transport: { http: { url: 'http://gw:8080', maxChunkBytes: '64KiB' } } }));
    assert.deepEqual(http.map((x) => x.path), ['chunk.maxBytes', 'inputs[0].maxLineBytes']);
    assert.match(http[1]!.message, /transport\.http\.maxChunkBytes .*split into pieces/);
  });
});
