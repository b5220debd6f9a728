/**
 * The agent <-> gateway protocol, for both transports. Agents and gateways depend on this file,
 * never on each other.
 *
 * NATS JetStream
 *   chunk:     publish to `<subjectPrefix>.<agentId>` (default `ferry.chunks.<agentId>`), payload =
 *              the encoded chunk (shared/chunk/codec.ts), header
 *              `Nats-Msg-Id: <agentId>/<seq>/<digest>` (chunkMsgId: the digest of the payload
 *              makes the id one no other sender can take first; see there).
 *              Done when JetStream's PubAck arrives; the gateway consumes the stream.
 *   heartbeat: core NATS publish to `<heartbeatSubject>.<agentId>` (default
 *              `ferry.heartbeats.<agentId>`), payload = Heartbeat as JSON.
 *
 * HTTP (to ferry-gateway's http.listen)
 *   POST /v1/chunks      body = one encoded chunk, `Content-Type: application/vnd.ferry.chunk`,
 *                        optional `Content-Encoding: gzip`, `Authorization: Bearer <token>`.
 *                        200 ChunkAck only after Kafka has every record (a chunk already
 *                        committed answers 200 with duplicate=true). 4xx: the chunk is refused
 *                        (400 malformed, 401/403 auth, agent id or topic, 413 too large or more
 *                        than MAX_RECORDS_PER_CHUNK records, 415 content type);
 *                        408/429/503 and 5xx: retry later, honouring Retry-After.
 *   POST /v1/heartbeats  body = Heartbeat as JSON -> 204 (403 when the token may not speak for
 *                        its agentId).
 *   Errors answer `{ "error": { "code": "FERRY_...", "message": "..." } }`.
 */
import { createHash } from 'node:crypto';
import { AGENT_ID_PATTERN } from './chunk/codec.js';

export const PROTOCOL_VERSION = 1;

export const HTTP_CHUNKS_PATH = '/v1/chunks';
export const HTTP_HEARTBEATS_PATH = '/v1/heartbeats';
export const HTTP_AGENTS_PATH = '/v1/agents';

export function chunkSubject(prefix: string, agentId: string): string {
  return `${prefix}.${agentId}`;
}

export function heartbeatSubject(prefix: string, agentId: string): string {
  return `${prefix}.${agentId}`;
}

/**
 * The Nats-Msg-Id of a chunk: `<agentId>/<seq>/<digest>`, digest = the first 128 bits of the
 * SHA-256 of the encoded chunk, base64url. JetStream deduplicates by this id across the whole
 * stream within its duplicate window, and NATS permissions cannot restrict headers: with a
 * plain `<agentId>/<seq>`, any sender could publish `victim/7` first and JetStream would drop
 * the genuine chunk as a duplicate (and acknowledge it, so the victim deletes it). With the
 * digest only a sender that already has the exact chunk bytes can name it. A resend carries the
 * same bytes (the spool keeps them), so it keeps the same id and is still deduplicated.
 */
export function chunkMsgId(agentId: string, seq: number, payload: Uint8Array): string {
  return `${agentId}/${seq}/${chunkDigest(payload)}`;
}

/** The digest part of chunkMsgId. */
export function chunkDigest(payload: Uint8Array): string {
  return createHash('sha256').update(payload).digest().subarray(0, 16).toString('base64url');
}

export interface Heartbeat {
  v: typeof PROTOCOL_VERSION;
  agentId: string;
  host: string;
  version: string;
  sentAtMs: number;
  startedAtMs: number;
  spool: {
    chunks: number;
    bytes: number;
    /** age in ms of the oldest unshipped chunk, null when the spool is empty */
    oldestUnshippedAgeMs: number | null;
    full: boolean;
  };
  /** ms since epoch of the last acknowledged ship, null if none yet */
  lastShipAtMs: number | null;
  transport: 'nats' | 'http';
  inputs: number;
  files: number;
}

export interface ChunkAck {
  id: string;
  duplicate: boolean;
  records: number;
}

export interface ErrorBody {
  error: { code: string; message: string };
}

/** Longest string field kept from a heartbeat (longer ones are cut to this many characters). */
export const HEARTBEAT_MAX_STRING = 256;

function cappedString(v: unknown): string | null {
  return typeof v === 'string' ? v.slice(0, HEARTBEAT_MAX_STRING) : null;
}

/** A finite non-negative number up to 2^53 (counts, sizes, ms timestamps and ages), else null. */
function count(v: unknown): number | null {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= Number.MAX_SAFE_INTEGER ? v : null;
}

/**
 * Validates a heartbeat from the wire; returns null (and never throws) when it is not one.
 * Required: `v`, `agentId` (AGENT_ID_PATTERN), `host`, `sentAtMs`, `spool.chunks`,
 * `spool.bytes`. The result is a fresh object holding only the known fields, validated: strings
 * cut to HEARTBEAT_MAX_STRING characters, numbers finite, non-negative and at most 2^53
 * (an optional one that is not becomes its default), unknown fields dropped. So what the
 * gateway keeps per agent is bounded whatever a sender puts in the JSON.
 */
export function parseHeartbeat(value: unknown): Heartbeat | null {
  if (value === null || typeof value !== 'object') return null;
  const h = value as Record<string, unknown>;
  const spool = h.spool as Record<string, unknown> | null | undefined;
  if (h.v !== PROTOCOL_VERSION || typeof h.agentId !== 'string' || !AGENT_ID_PATTERN.test(h.agentId)) return null;
  const host = cappedString(h.host);
  const sentAtMs = count(h.sentAtMs);
  if (host === null || sentAtMs === null || spool === null || typeof spool !== 'object') return null;
  const chunks = count(spool.chunks);
  const bytes = count(spool.bytes);
  if (chunks === null || bytes === null) return null;
  return {
    v: PROTOCOL_VERSION,
    agentId: h.agentId,
    host,
    version: cappedString(h.version) ?? 'unknown',
    sentAtMs,
    startedAtMs: count(h.startedAtMs) ?? 0,
    spool: { chunks, bytes, oldestUnshippedAgeMs: count(spool.oldestUnshippedAgeMs), full: spool.full === true },
    lastShipAtMs: count(h.lastShipAtMs),
    transport: h.transport === 'nats' ? 'nats' : 'http',
    inputs: count(h.inputs) ?? 0,
    files: count(h.files) ?? 0,
  };
}
