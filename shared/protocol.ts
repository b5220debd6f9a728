/**
 * The agent <-> gateway protocol, for both transports. Agents and gateways depend on this file,
 * never on each other.
 *
 * NATS JetStream
 *   chunk:     publish to `<subjectPrefix>.<agentId>` (default `ferry.chunks.<agentId>`), payload =
 *              the encoded chunk (shared/chunk/codec.ts), header `Nats-Msg-Id: <agentId>/<seq>`.
 *              Done when JetStream's PubAck arrives; the gateway consumes the stream.
 *   heartbeat: core NATS publish to `<heartbeatSubject>.<agentId>` (default
 *              `ferry.heartbeats.<agentId>`), payload = Heartbeat as JSON.
 *
 * HTTP (to ferry-gateway's http.listen)
 *   POST /v1/chunks      body = one encoded chunk, `Content-Type: application/vnd.ferry.chunk`,
 *                        optional `Content-Encoding: gzip`, `Authorization: Bearer <token>`.
 *                        200 ChunkAck only after Kafka has every record (a chunk already
 *                        committed answers 200 with duplicate=true). 4xx: the chunk is refused
 *                        (400 malformed, 401/403 auth or topic, 413 too large, 415 content type);
 *                        408/429/503 and 5xx: retry later, honouring Retry-After.
 *   POST /v1/heartbeats  body = Heartbeat as JSON -> 204.
 *   Errors answer `{ "error": { "code": "FERRY_...", "message": "..." } }`.
 */

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

/** Validates a heartbeat from the wire; returns null (and never throws) when it is not one. */
export function parseHeartbeat(value: unknown): Heartbeat | null {
  if (value === null || typeof value !== 'object') return null;
  const h = value as Partial<Heartbeat>;
  if (h.v !== PROTOCOL_VERSION || typeof h.agentId !== 'string' || typeof h.host !== 'string') return null;
  if (typeof h.sentAtMs !== 'number' || typeof h.spool !== 'object' || h.spool === null) return null;
  if (typeof h.spool.chunks !== 'number' || typeof h.spool.bytes !== 'number') return null;
  return h as Heartbeat;
}
