// Chunk fixtures for the gateway's sink and JetStream tests: encoded like the agent does.
import { decodeChunk, encodeChunk, type ChunkHeader, type DecodedChunk, type RecordEntry } from '../../../../shared/chunk/codec.js';

export interface ChunkSpec {
  agentId?: string;
  seq: number;
  topic: string;
  lines: ReadonlyArray<Buffer | string>;
  host?: string;
  path?: string;
  offsetStart?: number;
  /** per-line record flags */
  flags?: readonly number[];
  readAtMs?: number;
}

/** Encodes a chunk of consecutive newline-terminated lines starting at `offsetStart`. */
export function encodeTestChunk(spec: ChunkSpec): Buffer {
  const lines = spec.lines.map((l) => (Buffer.isBuffer(l) ? l : Buffer.from(l, 'utf8')));
  const entries: RecordEntry[] = lines.map((l, i) => ({ gap: i === 0 ? 0 : 1, length: l.length, flags: spec.flags?.[i] ?? 0 }));
  const offsetStart = spec.offsetStart ?? 0;
  let end = offsetStart;
  for (const l of lines) end += l.length + 1;
  const header: ChunkHeader = {
    agentId: spec.agentId ?? 'agent-1',
    seq: spec.seq,
    host: spec.host ?? 'host-1',
    path: spec.path ?? '/var/log/app.log',
    topic: spec.topic,
    file: { dev: '1', ino: '2', fingerprint: 'abcd' },
    offsetStart,
    offsetEnd: end,
    lineCount: lines.length,
    readAtMs: spec.readAtMs ?? 1_700_000_000_000 + spec.seq,
  };
  return encodeChunk(header, entries, lines);
}

export function testChunk(spec: ChunkSpec): DecodedChunk {
  return decodeChunk(encodeTestChunk(spec));
}

/** File offset of line i when lines are consecutive from `offsetStart`. */
export function lineOffsets(lines: ReadonlyArray<Buffer | string>, offsetStart = 0): number[] {
  const out: number[] = [];
  let pos = offsetStart;
  for (const l of lines) {
    out.push(pos);
    pos += (Buffer.isBuffer(l) ? l.length : Buffer.byteLength(l)) + 1;
  }
  return out;
}

/** `n` lines of `size` bytes each, tagged with `tag` and their index, padded with binary bytes. */
export function makeLines(n: number, size: number, tag: string): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const head = Buffer.from(`${tag}-${i}:`);
    const b = Buffer.alloc(Math.max(size, head.length));
    head.copy(b);
    for (let k = head.length; k < b.length; k++) b[k] = k % 7 === 0 ? 0xff : 0x41 + (k % 26);
    out.push(b);
  }
  return out;
}
