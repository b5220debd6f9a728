/**
 * Ships chunks to ferry-gateway over HTTP(S): one `POST <url>/v1/chunks` per chunk, body = the
 * encoded chunk (gzip by default), bearer token, keep-alive connections (shared/protocol.ts).
 * The gateway is named by its origin (no `user:pass@`) in logs, errors and health.
 *
 *   2xx + ChunkAck            ok: the gateway has the chunk in Kafka. Only a JSON ChunkAck naming
 *                             exactly the chunk id sent counts: any other 2xx answer (a proxy's or
 *                             login page, another id, no body) is a retry (reason `bad-ack`), shown
 *                             by health (so /readyz) until a real ack comes; the chunk is never
 *                             deleted on it.
 *   408, 429, 5xx             retry, honouring Retry-After (seconds or HTTP date)
 *   network error, timeout    retry
 *   any other status          fatal for this chunk: the gateway refuses it (400 malformed,
 *                             401/403 auth or topic, 413 too large, 415...). The pump keeps it
 *                             and blocks behind it; the error body's code and message are kept.
 */
import { readFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import type { Logger } from '../../../shared/log.js';
import type { Registry } from '../../../shared/metrics.js';
import { CHUNK_CONTENT_TYPE, chunkId } from '../../../shared/chunk/codec.js';
import { HTTP_CHUNKS_PATH, HTTP_HEARTBEATS_PATH, type ChunkAck, type Heartbeat } from '../../../shared/protocol.js';
import { TransportError, errorMessage } from '../../../shared/errors.js';
import { parseRetryAfter } from '../../../shared/backoff.js';
import type { AgentConfig } from '../../config.js';
import type { SpooledChunk } from '../../spool/types.js';
import { ShipFailure, type SendResult, type Shipper, type ShipperHealth, type TransportState } from '../types.js';
import { transportMetrics, type TransportMetrics } from '../metrics.js';
import { settleBy } from '../../../shared/async.js';
import { redactUrl } from '../../../shared/redact.js';

export type HttpTransportConfig = NonNullable<AgentConfig['transport']['http']>;

const gzip = promisify(gzipCb);
/** Bytes of a response body kept (error messages); the rest is discarded. */
const MAX_RESPONSE_BYTES = 64 * 1024;

export interface HttpShipperOptions {
  config: HttpTransportConfig;
  agentId: string;
  log: Logger;
  registry: Registry;
}

interface Answer {
  status: number;
  headers: IncomingMessage['headers'];
  body: string;
}

function readFileFor(key: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    throw new TransportError(`transport.http.${key}: cannot read ${file}: ${errorMessage(err)}`, { cause: err });
  }
}

/** `{ "error": { "code", "message" } }` -> "CODE: message", else the start of the body. */
function describeBody(body: string): string {
  try {
    const parsed = JSON.parse(body) as { error?: { code?: unknown; message?: unknown } };
    const e = parsed.error;
    if (e && (typeof e.code === 'string' || typeof e.message === 'string')) {
      return [e.code, e.message].filter((x) => typeof x === 'string').join(': ');
    }
  } catch {
    // not JSON: show the text
  }
  return body.trim().slice(0, 300);
}

/** True when `body` is the gateway's ChunkAck for chunk `id` (shared/protocol.ts). */
export function isAckOf(body: string, id: string): boolean {
  let parsed: unknown;
  try {
    parsed = JSON.parse(body);
  } catch {
    return false;
  }
  if (parsed === null || typeof parsed !== 'object') return false;
  const a = parsed as Partial<ChunkAck>;
  return a.id === id && typeof a.duplicate === 'boolean' && typeof a.records === 'number';
}

export class HttpShipper implements Shipper {
  readonly transport = 'http' as const;
  private readonly cfg: HttpTransportConfig;
  private readonly agentId: string;
  private readonly log: Logger;
  private readonly m: TransportMetrics;
  private readonly base: URL;
  private readonly chunksUrl: URL;
  private readonly heartbeatsUrl: URL;
  private agent: HttpAgent | HttpsAgent | undefined;
  private state: TransportState = 'connecting';
  private sinceMs = Date.now();
  private everConnected = false;
  private lastError = '';
  /** a problem of the gateway (5xx, 429), logged once per change */
  private issue: { reason: string; message: string } | null = null;
  private stopping = false;
  private readonly inflight = new Set<Promise<SendResult>>();

  constructor(opts: HttpShipperOptions) {
    this.cfg = opts.config;
    this.agentId = opts.agentId;
    this.log = opts.log.child({ component: 'shipper', transport: 'http' });
    this.m = transportMetrics(opts.registry);
    this.base = new URL(opts.config.url);
    if (this.base.protocol !== 'http:' && this.base.protocol !== 'https:') {
      throw new TransportError(`transport.http.url: ${opts.config.url} is not an http:// or https:// URL`);
    }
    const prefix = this.base.pathname.replace(/\/+$/, '');
    this.chunksUrl = new URL(prefix + HTTP_CHUNKS_PATH, this.base);
    this.heartbeatsUrl = new URL(prefix + HTTP_HEARTBEATS_PATH, this.base);
  }

  start(): Promise<void> {
    try {
      this.createAgent();
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.log.info({ url: redactUrl(this.chunksUrl.href), gzip: this.cfg.gzip }, 'HTTP shipper ready');
    return Promise.resolve();
  }

  private createAgent(): void {
    const sockets = { keepAlive: true, keepAliveMsecs: 10_000, maxSockets: this.cfg.maxInFlight + 1, maxFreeSockets: this.cfg.maxInFlight + 1 };
    if (this.base.protocol === 'https:') {
      const tls = this.cfg.tls;
      if (tls && (tls.certFile === undefined) !== (tls.keyFile === undefined)) {
        throw new TransportError('transport.http.tls: certFile and keyFile go together (client certificate for mTLS)');
      }
      this.agent = new HttpsAgent({
        ...sockets,
        ...(tls?.caFile !== undefined ? { ca: readFileFor('tls.caFile', tls.caFile) } : {}),
        ...(tls?.certFile !== undefined ? { cert: readFileFor('tls.certFile', tls.certFile) } : {}),
        ...(tls?.keyFile !== undefined ? { key: readFileFor('tls.keyFile', tls.keyFile) } : {}),
      });
    } else {
      if (this.cfg.tls) this.log.warn('transport.http.tls is set but transport.http.url is http://: the TLS files are not used');
      this.agent = new HttpAgent(sockets);
    }
  }

  send(chunks: readonly SpooledChunk[]): Promise<SendResult[]> {
    if (!this.agent || this.stopping) {
      const err = new ShipFailure('not-connected', 'the HTTP shipper is not running');
      return Promise.resolve(chunks.map(() => ({ retry: err })));
    }
    return Promise.all(
      chunks.map((c) => {
        const p = this.post(c);
        this.inflight.add(p);
        void p.finally(() => this.inflight.delete(p));
        return p;
      }),
    );
  }

  private async post(chunk: SpooledChunk): Promise<SendResult> {
    const id = chunkId(this.agentId, chunk.seq);
    const headers: OutgoingHttpHeaders = { 'content-type': CHUNK_CONTENT_TYPE, 'ferry-chunk-id': id };
    let body: Buffer = chunk.bytes;
    if (this.cfg.gzip) {
      body = await gzip(chunk.bytes, { level: 1 });
      headers['content-encoding'] = 'gzip';
    }
    let answer: Answer;
    try {
      answer = await this.request(this.chunksUrl, body, headers);
    } catch (err) {
      return { retry: this.networkFailed(err) };
    }
    this.reachable();
    const { status } = answer;
    const what = describeBody(answer.body);
    if (status >= 200 && status < 300) {
      if (!isAckOf(answer.body, id)) {
        const type = answer.headers['content-type'] ?? 'no content type';
        return this.retryFor(
          'bad-ack',
          `HTTP ${status} (${type}) from ${this.base.origin} is not the gateway's acknowledgement of chunk ${id}${what ? `: ${what.slice(0, 120)}` : ''} (a proxy or login page in between?); the chunk stays in the spool`,
          status,
        );
      }
      if (this.issue) {
        this.log.info({ was: this.issue.reason }, 'the gateway accepts chunks again');
        this.issue = null;
      }
      return 'ok';
    }
    if (status === 408 || status === 429 || status >= 500) {
      const reason = status === 429 ? 'http-429' : status === 408 ? 'http-408' : 'http-5xx';
      return this.retryFor(reason, `gateway answered HTTP ${status} for chunk ${id}${what ? `: ${what}` : ''}`, status, parseRetryAfter(answer.headers['retry-after']));
    }
    return { fatal: new ShipFailure(`http-${status}`, `gateway refused chunk ${id} (${chunk.path}, topic ${chunk.topic}) with HTTP ${status}${what ? `: ${what}` : ''}`) };
  }

  /** A retry for a gateway-side problem, logged once per change of reason. */
  private retryFor(reason: string, message: string, status: number, retryAfterMs?: number): SendResult {
    const failure = new ShipFailure(reason, message);
    if (this.issue?.reason !== reason) {
      this.issue = { reason, message };
      this.log.warn({ status, retryAfterMs, reason }, message);
    }
    return retryAfterMs !== undefined ? { retry: failure, retryAfterMs } : { retry: failure };
  }

  private request(url: URL, body: Buffer, headers: OutgoingHttpHeaders): Promise<Answer> {
    const h: OutgoingHttpHeaders = { ...headers, 'content-length': body.length, 'user-agent': 'ferry-agent' };
    if (this.cfg.token !== undefined) h.authorization = `Bearer ${this.cfg.token}`;
    const make = url.protocol === 'https:' ? httpsRequest : httpRequest;
    return new Promise<Answer>((resolve, reject) => {
      const req = make(url, { method: 'POST', agent: this.agent, headers: h, timeout: this.cfg.timeoutMs }, (res) => {
        const parts: Buffer[] = [];
        let size = 0;
        res.on('data', (d: Buffer) => {
          if (size < MAX_RESPONSE_BYTES) parts.push(d);
          size += d.length;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts).toString('utf8', 0, MAX_RESPONSE_BYTES) }));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new ShipFailure('timeout', `no answer from ${url.origin} within ${this.cfg.timeoutMs} ms (transport.http.timeoutMs)`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  private reachable(): void {
    if (this.state === 'connected') return;
    if (this.everConnected) {
      this.m.reconnects.inc();
      this.log.info({ url: this.base.origin }, 'the gateway is reachable again');
    } else {
      this.log.info({ url: this.base.origin }, 'reached the gateway');
    }
    this.everConnected = true;
    this.lastError = '';
    this.setState('connected');
  }

  private networkFailed(err: unknown): ShipFailure {
    const failure = err instanceof ShipFailure ? err : new ShipFailure('network', `cannot reach the gateway at ${this.base.origin}: ${errorMessage(err)}`, { cause: err });
    if (this.state === 'connected') this.m.disconnects.inc();
    if (failure.message !== this.lastError) {
      this.lastError = failure.message;
      this.log.warn({ err: failure }, 'HTTP transport failing; chunks wait in the spool');
    }
    this.setState('disconnected');
    return failure;
  }

  private setState(state: TransportState): void {
    if (state === this.state) return;
    this.state = state;
    this.sinceMs = Date.now();
    this.m.connected.set(state === 'connected' ? 1 : 0);
  }

  async heartbeat(hb: Heartbeat): Promise<void> {
    if (!this.agent || this.stopping) throw new ShipFailure('not-connected', 'heartbeat not sent: the HTTP shipper is not running');
    let answer: Answer;
    try {
      answer = await this.request(this.heartbeatsUrl, Buffer.from(JSON.stringify(hb)), { 'content-type': 'application/json' });
    } catch (err) {
      throw this.networkFailed(err);
    }
    this.reachable();
    if (answer.status < 200 || answer.status >= 300) {
      throw new ShipFailure(`http-${answer.status}`, `heartbeat refused with HTTP ${answer.status}: ${describeBody(answer.body)}`);
    }
  }

  health(): ShipperHealth {
    const since = new Date(this.sinceMs).toISOString();
    let detail: string;
    if (this.state === 'connected') detail = `gateway ${this.base.origin} reachable since ${since}${this.issue ? `; but ${this.issue.message}` : ''}`;
    else if (this.state === 'connecting') detail = `no request to ${this.base.origin} answered yet`;
    else if (this.state === 'closed') detail = 'closed';
    else detail = `gateway ${this.base.origin} unreachable since ${since}: ${this.lastError}`;
    // Answers that are not acks mean something else than the gateway answers: not ready.
    const ok = this.state === 'connected' && this.issue?.reason !== 'bad-ack';
    return { ok, transport: 'http', state: this.state, detail, sinceMs: this.sinceMs, server: this.base.origin };
  }

  /** Waits for requests under way until `deadlineMs` (ms since epoch), then closes the sockets. */
  async stop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    await settleBy(this.inflight, deadlineMs);
    this.agent?.destroy();
    this.agent = undefined;
    this.setState('closed');
  }
}
