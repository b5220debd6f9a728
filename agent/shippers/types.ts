/**
 * The shipper contract. A shipper moves chunks over one transport (NATS JetStream, HTTP) and
 * says, per chunk, how it went; the pump (pump.ts) owns everything else: reading the spool in
 * seq order, the in-flight window, backoff, acknowledging to the spool, pausing on fatal chunks.
 *
 * send() never throws and never retries by itself: each chunk resolves to
 *   'ok'                    the far side has it (JetStream PubAck, HTTP 2xx): the chunk may be deleted;
 *   { retry, retryAfterMs } a transient failure (down, timeout, 5xx, 429): send it again later;
 *   { fatal }               the far side refuses this chunk (HTTP 4xx): it stays in the spool,
 *                           shipping stops behind it and an operator has to look.
 */
import { TransportError } from '../../shared/errors.js';
import { redactText } from '../../shared/redact.js';
import type { Heartbeat } from '../../shared/protocol.js';
import type { SpooledChunk } from '../spool/types.js';

export type SendResult = 'ok' | { retry: Error; retryAfterMs?: number } | { fatal: Error };

/** Where a transport stands, for logs, metrics, /readyz and `ferry-agent status`. */
export type TransportState = 'connecting' | 'connected' | 'disconnected' | 'closed';

export interface ShipperHealth {
  /** true when the transport is connected and the last sends did not fail for a transport reason */
  ok: boolean;
  transport: 'nats' | 'http';
  state: TransportState;
  /** human-readable: server, why not connected, since when */
  detail: string;
  /** when `state` last changed, ms since epoch */
  sinceMs: number;
  /** the server currently used (URL), when known */
  server?: string;
}

export interface Shipper {
  readonly transport: 'nats' | 'http';
  /** Starts connecting; resolves without waiting for the server (it may be down: sends then answer retry). */
  start(): Promise<void>;
  /** Waits up to `deadlineMs` for sends under way, then closes the connection. */
  stop(deadlineMs: number): Promise<void>;
  /** Ships the chunks (concurrently where the transport allows) and answers one result per chunk, in order. */
  send(chunks: readonly SpooledChunk[]): Promise<SendResult[]>;
  /** Sends one heartbeat; best effort: rejects when it could not be sent. */
  heartbeat(hb: Heartbeat): Promise<void>;
  health(): ShipperHealth;
}

export function isRetry(r: SendResult): r is { retry: Error; retryAfterMs?: number } {
  return typeof r === 'object' && 'retry' in r;
}

export function isFatal(r: SendResult): r is { fatal: Error } {
  return typeof r === 'object' && 'fatal' in r;
}

/**
 * A failed send, with a short stable `reason` (metric label, log-once key): `not-connected`,
 * `no-stream`, `timeout`, `rejected`, `http-5xx`, `http-429`, `network`, `bad-ack`, ...
 * Its message never holds URL credentials (it reaches logs, status and the spool's meta).
 */
export class ShipFailure extends TransportError {
  readonly reason: string;
  constructor(reason: string, message: string, options?: { cause?: unknown }) {
    super(redactText(message), options);
    this.reason = reason;
  }
}
