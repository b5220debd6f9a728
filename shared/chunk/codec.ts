/**
 * The chunk wire format, version 1. A chunk is the unit of spooling, shipping, acknowledgement
 * and deduplication: a run of whole records (lines) from one file, cut once by the agent and
 * never re-cut, identified by `agentId/seq`.
 *
 * Layout (all integers big-endian; varint = unsigned LEB128, at most 8 bytes, < 2^53):
 *
 *   0   4  magic "FRYC" (0x46 0x52 0x59 0x43)
 *   4   1  version (1)
 *   5   1  flags (reserved, 0)
 *   6   4  header length H
 *   10  H  header: UTF-8 JSON object (ChunkHeader)
 *   .   4  record count N (equals header.lineCount)
 *   .      N record entries: varint gap, varint length, u8 record flags
 *   .      data: the records' bytes, concatenated (sum of lengths)
 *   end    nothing may follow
 *
 * Invariants (checked by decodeChunk):
 * - a chunk holds at most MAX_RECORDS_PER_CHUNK records (checked before anything is allocated
 *   per record: a small body of millions of empty records is refused at once);
 * - record i starts in the file at `previous end + gap` (the first at `offsetStart + gap`) and
 *   its bytes are the `length` bytes that follow in data; a record is the line without its
 *   newline, so consecutive lines have gap 1;
 * - every record lies inside [offsetStart, offsetEnd], records are in file order;
 * - record bytes are opaque: invalid UTF-8 and binary content are carried unchanged.
 */
import { ChunkMalformedError, ChunkRecordLimitError, ChunkVersionError } from '../errors.js';
import { chunkFromColumns, type DecodedChunk } from './decoded.js';

export const CHUNK_MAGIC = Buffer.from('FRYC', 'ascii');
export const CHUNK_VERSION = 1;
export const CHUNK_CONTENT_TYPE = 'application/vnd.ferry.chunk';
/**
 * Most records one chunk may hold; decodeChunk refuses more (ChunkRecordLimitError). Every
 * record becomes one Kafka record (~65 CPU-µs in the gateway's client) and one decoded object,
 * so this bounds a chunk's cost to seconds and tens of MiB whatever its byte size. Producers
 * (the agent's chunker) must cut a chunk at this many records.
 */
export const MAX_RECORDS_PER_CHUNK = 65_536;

/** Record flags: how a record relates to the line(s) it came from. */
export const RecordFlag = {
  /** A piece of a line longer than maxLineBytes; the line continues in the next record. */
  Continues: 1,
  /** A line longer than maxLineBytes, cut there; the rest of the line was skipped. */
  Truncated: 2,
  /** Several lines joined by the multiline rule (the record holds their newlines). */
  Multiline: 4,
  /** The file's last line, flushed without its newline after the idle timeout. */
  NoNewline: 8,
} as const;

export interface FileIdentity {
  /** device number, decimal string */
  dev: string;
  /** inode number, decimal string */
  ino: string;
  /** hex digest of the file's first bytes (see the tailer) */
  fingerprint: string;
}

export interface ChunkHeader {
  agentId: string;
  /** per-agent, strictly increasing, starts at 1 */
  seq: number;
  host: string;
  path: string;
  topic: string;
  file: FileIdentity;
  /** file byte offset where this chunk's bytes start */
  offsetStart: number;
  /** file byte offset just past the last byte this chunk consumed */
  offsetEnd: number;
  lineCount: number;
  /** when the agent read the bytes, ms since epoch */
  readAtMs: number;
}

export interface RecordEntry {
  /** bytes between the previous record's end (or offsetStart) and this record's start */
  gap: number;
  length: number;
  flags: number;
}

export type { DecodedChunk, DecodedRecord, RecordColumns } from './decoded.js';
export { chunkFromRecords } from './decoded.js';

export const AGENT_ID_PATTERN = /^[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}$/;
export const TOPIC_PATTERN = /^[A-Za-z0-9._-]{1,249}$/;

/**
 * `agentId/seq`: the chunk's id on every hop (HTTP, the dedup set); over JetStream its
 * Nats-Msg-Id is this plus a digest of its bytes (shared/protocol.ts chunkMsgId).
 */
export function chunkId(agentId: string, seq: number): string {
  return `${agentId}/${seq}`;
}

/** Bytes of a chunk's frame around its header JSON: magic, version, flags, header length, record count. */
export const CHUNK_FRAME_BYTES = 14;

/**
 * The largest record (piece of a line) an agent cuts: Kafka's default `message.max.bytes`
 * (1048588, for a whole record batch) minus 16 KiB for the record's `ferry.*` headers (the path
 * among them) and the batch overhead, so that every record fits a broker with default settings.
 */
export const MAX_RECORD_BYTES = 1024 * 1024 - 16 * 1024;

/** Bytes one record's entry takes in the chunk's index (varint gap, varint length, flags). */
export function recordEntryBytes(gap: number, length: number): number {
  return varintSize(gap) + varintSize(length) + 1;
}

/** The most a record entry can take: two 8-byte varints and the flags byte. */
export const MAX_RECORD_ENTRY_BYTES = 17;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(buf: Buffer, pos: number, n: number): number {
  while (n >= 0x80) {
    buf[pos++] = (n % 128) | 0x80;
    n = Math.floor(n / 128);
  }
  buf[pos++] = n;
  return pos;
}

/**
 * Encodes a chunk. `data` holds the records' bytes in order (one buffer or several that are
 * concatenated); its total length must equal the sum of the entries' lengths.
 */
export function encodeChunk(header: ChunkHeader, entries: readonly RecordEntry[], data: Buffer | readonly Buffer[]): Buffer {
  const parts = Buffer.isBuffer(data) ? [data] : data;
  const headerJson = Buffer.from(JSON.stringify(header), 'utf8');
  let indexBytes = 0;
  let dataBytes = 0;
  for (const e of entries) {
    indexBytes += recordEntryBytes(e.gap, e.length);
    dataBytes += e.length;
  }
  let partsBytes = 0;
  for (const p of parts) partsBytes += p.length;
  if (partsBytes !== dataBytes) {
    throw new RangeError(`chunk data is ${partsBytes} bytes but its records add up to ${dataBytes}`);
  }
  if (entries.length !== header.lineCount) {
    throw new RangeError(`chunk has ${entries.length} records but header.lineCount is ${header.lineCount}`);
  }
  const out = Buffer.allocUnsafe(CHUNK_FRAME_BYTES + headerJson.length + indexBytes + dataBytes);
  CHUNK_MAGIC.copy(out, 0);
  out[4] = CHUNK_VERSION;
  out[5] = 0;
  out.writeUInt32BE(headerJson.length, 6);
  headerJson.copy(out, 10);
  let pos = 10 + headerJson.length;
  out.writeUInt32BE(entries.length, pos);
  pos += 4;
  for (const e of entries) {
    pos = writeVarint(out, pos, e.gap);
    pos = writeVarint(out, pos, e.length);
    out[pos++] = e.flags;
  }
  for (const p of parts) {
    p.copy(out, pos);
    pos += p.length;
  }
  return out;
}

function fail(msg: string): never {
  throw new ChunkMalformedError(`malformed chunk: ${msg}`);
}

function isSafeNonNegInt(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** Validates a parsed header object field by field; names the first field that is wrong. */
export function validateHeader(h: unknown): ChunkHeader {
  if (h === null || typeof h !== 'object' || Array.isArray(h)) fail('header is not a JSON object');
  const o = h as Record<string, unknown>;
  const str = (k: string): string => {
    const v = o[k];
    if (typeof v !== 'string') fail(`header.${k} must be a string`);
    return v;
  };
  const int = (k: string): number => {
    const v = o[k];
    if (!isSafeNonNegInt(v)) fail(`header.${k} must be a non-negative integer`);
    return v;
  };
  const agentId = str('agentId');
  if (!AGENT_ID_PATTERN.test(agentId)) fail(`header.agentId "${agentId.slice(0, 64)}" is not a valid agent id`);
  const seq = int('seq');
  if (seq < 1) fail('header.seq must be >= 1');
  const topic = str('topic');
  if (!TOPIC_PATTERN.test(topic)) fail(`header.topic "${topic.slice(0, 64)}" is not a valid Kafka topic name`);
  const file = o.file as Record<string, unknown> | undefined;
  if (file === null || typeof file !== 'object' || Array.isArray(file)) fail('header.file must be an object');
  for (const k of ['dev', 'ino', 'fingerprint']) {
    if (typeof file[k] !== 'string') fail(`header.file.${k} must be a string`);
  }
  const header: ChunkHeader = {
    agentId,
    seq,
    host: str('host'),
    path: str('path'),
    topic,
    file: { dev: file.dev as string, ino: file.ino as string, fingerprint: file.fingerprint as string },
    offsetStart: int('offsetStart'),
    offsetEnd: int('offsetEnd'),
    lineCount: int('lineCount'),
    readAtMs: int('readAtMs'),
  };
  if (header.offsetEnd < header.offsetStart) fail('header.offsetEnd is before header.offsetStart');
  if (header.lineCount > MAX_RECORDS_PER_CHUNK) throw new ChunkRecordLimitError(header.lineCount, MAX_RECORDS_PER_CHUNK);
  return header;
}

/** Reads only the header (for routing and dedup before the records are needed). */
export function decodeChunkHeader(buf: Uint8Array): { header: ChunkHeader; bodyStart: number } {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  if (b.length < 10) fail(`${b.length} bytes is too short for a chunk`);
  if (b[0] !== 0x46 || b[1] !== 0x52 || b[2] !== 0x59 || b[3] !== 0x43) fail('wrong magic (not a Ferry chunk)');
  const version = b[4]!;
  if (version !== CHUNK_VERSION) {
    if (version > CHUNK_VERSION) throw new ChunkVersionError(version);
    fail(`unknown version ${version}`);
  }
  const hlen = b.readUInt32BE(6);
  if (10 + hlen + 4 > b.length) fail(`header length ${hlen} runs past the end`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(b.toString('utf8', 10, 10 + hlen));
  } catch {
    fail('header is not valid JSON');
  }
  return { header: validateHeader(parsed), bodyStart: 10 + hlen };
}

/**
 * Decodes and validates a chunk. Never throws anything but ChunkMalformedError or
 * ChunkVersionError, whatever the input bytes are. Records are columns over `buf` (decoded.ts),
 * not copies.
 */
export function decodeChunk(buf: Uint8Array): DecodedChunk {
  const b = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  const { header, bodyStart } = decodeChunkHeader(b);
  let pos = bodyStart;
  const count = b.readUInt32BE(pos);
  pos += 4;
  if (count > MAX_RECORDS_PER_CHUNK) throw new ChunkRecordLimitError(count, MAX_RECORDS_PER_CHUNK);
  if (count !== header.lineCount) fail(`record count ${count} differs from header.lineCount ${header.lineCount}`);
  // Each entry takes at least 3 bytes: bound the count before allocating anything.
  if (count * 3 > b.length - pos) fail(`record count ${count} does not fit in ${b.length} bytes`);
  const readVarint = (): number => {
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      if (pos >= b.length) fail('record index runs past the end');
      const byte = b[pos++]!;
      result += (byte & 0x7f) * mul;
      if ((byte & 0x80) === 0) {
        if (!Number.isSafeInteger(result)) fail('varint out of range');
        return result;
      }
      mul *= 128;
    }
    fail('varint longer than 8 bytes');
  };
  // Columns (decoded.ts): offsets holds the gaps until the data's start is known.
  const spans = new Int32Array(2 * count);
  const offsets = new Float64Array(count);
  const flags = new Uint8Array(count);
  let flagged = false;
  let dataBytes = 0;
  for (let i = 0; i < count; i++) {
    offsets[i] = readVarint();
    const len = readVarint();
    // Longer than the whole chunk cannot be right (nor fit an Int32 span).
    if (len > b.length) fail(`record ${i} is ${len} bytes, longer than the chunk`);
    spans[2 * i + 1] = len;
    if (pos >= b.length) fail('record index runs past the end');
    const f = b[pos++]!;
    flags[i] = f;
    flagged ||= f !== 0;
    dataBytes += len;
  }
  if (pos + dataBytes !== b.length) {
    fail(`records add up to ${dataBytes} bytes but ${b.length - pos} bytes of data follow the index`);
  }
  let fileOffset = header.offsetStart;
  for (let i = 0; i < count; i++) {
    const offset = fileOffset + offsets[i]!;
    const len = spans[2 * i + 1]!;
    fileOffset = offset + len;
    if (fileOffset > header.offsetEnd) fail(`record ${i} ends at file offset ${fileOffset}, past header.offsetEnd ${header.offsetEnd}`);
    offsets[i] = offset;
    spans[2 * i] = pos;
    pos += len;
  }
  return chunkFromColumns(header, dataBytes, { data: b, spans, offsets, flags, flagged });
}
