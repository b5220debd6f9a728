/**
 * Sizing records and chunks to what the transport and Kafka take, so that every byte of any
 * line is shipped and produced with default settings on every side.
 *
 * - The transport limit is the largest encoded chunk the transport takes. NATS: the server's
 *   `max_payload` (announced in INFO at connect) minus room for the message headers
 *   (`Nats-Msg-Id`); HTTP: `transport.http.maxChunkBytes` (the gateway's http.bodyLimitBytes).
 * - A record (a line, or a piece of a longer line flagged Continues) is at most
 *   min(maxLineBytes, MAX_RECORD_BYTES (Kafka's default message.max.bytes minus the record's
 *   headers), transport limit - CHUNK_HEADER_ROOM_BYTES - one index entry).
 * - A chunk's records plus their index take at most min(chunk.maxBytes, transport limit -
 *   CHUNK_HEADER_ROOM_BYTES); a single larger record gets a chunk of its own, which fits too.
 *   CHUNK_HEADER_ROOM_BYTES covers the frame and the header JSON (agent id, host, topic, and a
 *   path up to PATH_MAX).
 * - A chunk is cut once, possibly while disconnected: the agent cuts with the last limit it
 *   learned (kept in the spool's meta under META_MAX_CHUNK_BYTES), before any with NATS's
 *   default max_payload (1 MiB). Chunks cut before a lower limit was learned are never re-cut:
 *   the shipper refuses them as too large and shipping blocks behind them, visibly.
 * - Below MIN_RECORD_BYTES / MIN_CHUNK_BYTES the transport is not followed (a server announcing
 *   a tiny max_payload gets chunks it refuses, visibly, rather than one-byte records).
 */
import { MAX_RECORD_BYTES, MAX_RECORD_ENTRY_BYTES } from '../shared/chunk/codec.js';
import type { ConfigIssue } from '../shared/errors.js';
import type { AgentConfig } from './config.js';

/** nats-server's default max_payload. */
export const NATS_DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024;
/** Room for a published chunk's message headers (`NATS/1.0`, `Nats-Msg-Id: <agentId>/<seq>/<digest>`). */
export const NATS_HEADERS_ROOM_BYTES = 512;
/** Room for a chunk's frame and header JSON. */
export const CHUNK_HEADER_ROOM_BYTES = 8 * 1024;
export const MIN_RECORD_BYTES = 256;
export const MIN_CHUNK_BYTES = 1024;
/** spool_meta key: the last transport limit learned, JSON `{ kind, maxChunkBytes, learnedAtMs }` */
export const META_MAX_CHUNK_BYTES = 'transport.maxChunkBytes';

export interface ChunkLimits {
  /** the longest record (line or piece) cut */
  recordBytes: number;
  /** a chunk is cut before its records and index pass this */
  chunkBytes: number;
}

/** The largest encoded chunk a NATS server with this max_payload takes. */
export function natsMaxChunkBytes(maxPayload: number): number {
  return maxPayload - NATS_HEADERS_ROOM_BYTES;
}

export function chunkLimits(maxLineBytes: number, chunkMaxBytes: number, transportMaxChunkBytes: number): ChunkLimits {
  const room = transportMaxChunkBytes - CHUNK_HEADER_ROOM_BYTES;
  return {
    recordBytes: Math.min(maxLineBytes, Math.max(MIN_RECORD_BYTES, Math.min(MAX_RECORD_BYTES, room - MAX_RECORD_ENTRY_BYTES))),
    chunkBytes: Math.max(MIN_CHUNK_BYTES, Math.min(chunkMaxBytes, room)),
  };
}

/** The transport limit known from the config alone: HTTP's setting, or NATS's default max_payload. */
export function configuredMaxChunkBytes(config: Pick<AgentConfig, 'transport'>): number {
  return config.transport.http ? config.transport.http.maxChunkBytes : natsMaxChunkBytes(NATS_DEFAULT_MAX_PAYLOAD_BYTES);
}

/** What to record in the spool's meta once a transport announced its limit. */
export function learnedLimitMeta(kind: 'nats' | 'http', maxChunkBytes: number, nowMs = Date.now()): string {
  return JSON.stringify({ kind, maxChunkBytes, learnedAtMs: nowMs });
}

/** The limit to cut with at start: the one last learned over the configured transport, else the configured one. */
export function startingMaxChunkBytes(config: Pick<AgentConfig, 'transport'>, stored: string | undefined): number {
  if (config.transport.http || stored === undefined) return configuredMaxChunkBytes(config);
  try {
    const m = JSON.parse(stored) as { kind?: unknown; maxChunkBytes?: unknown };
    if (m.kind === 'nats' && typeof m.maxChunkBytes === 'number' && Number.isSafeInteger(m.maxChunkBytes) && m.maxChunkBytes > 0) return m.maxChunkBytes;
  } catch {
    // unreadable: the default
  }
  return configuredMaxChunkBytes(config);
}

/**
 * For `ferry-agent check`: settings the transport's (default) limits or Kafka's default record
 * size cannot honour. They are not errors: records and chunks are cut smaller.
 */
export function limitWarnings(config: Pick<AgentConfig, 'transport' | 'chunk' | 'inputs'>): ConfigIssue[] {
  const max = configuredMaxChunkBytes(config);
  const by = config.transport.http
    ? `transport.http.maxChunkBytes (${max} bytes)`
    : `NATS's default max_payload (${NATS_DEFAULT_MAX_PAYLOAD_BYTES} bytes; a server announcing another limit is followed once connected)`;
  const out: ConfigIssue[] = [];
  const chunk = chunkLimits(config.chunk.maxBytes, config.chunk.maxBytes, max).chunkBytes;
  if (config.chunk.maxBytes > chunk) {
    out.push({ path: 'chunk.maxBytes', message: `${config.chunk.maxBytes} bytes do not fit ${by}: chunks are cut at ${chunk} bytes` });
  }
  config.inputs.forEach((input, i) => {
    const record = chunkLimits(input.maxLineBytes, config.chunk.maxBytes, max).recordBytes;
    if (input.maxLineBytes <= record) return;
    const why = record < MAX_RECORD_BYTES ? by : `Kafka's default message.max.bytes (records of at most ${MAX_RECORD_BYTES} bytes)`;
    const what = input.longLines === 'truncate' ? `longer lines are truncated at ${record} bytes` : `longer lines are split into pieces of ${record} bytes`;
    out.push({ path: `inputs[${i}].maxLineBytes`, message: `${input.maxLineBytes} bytes do not fit ${why}: ${what}` });
  });
  return out;
}
