/**
 * Ships chunks to NATS JetStream: `js.publish(<subjectPrefix>.<agentId>, chunk, { msgID:
 * agentId/seq/digest })` and waits for the PubAck (shared/protocol.ts chunkMsgId: the digest
 * of the chunk's bytes keeps other senders from taking its id first). The v3 client has no async
 * publish API, so concurrency is the pump's window of publish promises.
 *
 * - Connects in the background and reconnects forever; a send while not connected answers
 *   "retry" at once (the spool is the buffer, not the client's reconnect buffer).
 * - No stream captures the subject yet (the gateway creates it): "no responders", a retry; the
 *   condition is logged once when it starts and once when it ends, never per chunk.
 * - The server's max_payload (INFO, at every connect) is announced through `onMaxChunkBytes`
 *   as the largest encoded chunk it takes (agent/limits.ts), so that the tailer cuts to fit.
 * - A chunk larger than that (cut before the limit was known) can never be published: fatal
 *   for that chunk, which stays in the spool and blocks shipping, visibly.
 * - Server URLs are shown and logged without their `user:pass@` (shared/redact.ts).
 * - Heartbeats are core NATS publishes (fire and forget) to `<heartbeatSubject>.<agentId>`.
 */
import { connect, errors as natsErrors, type NatsConnection, type NodeConnectionOptions } from '@nats-io/transport-node';
import { jetstream, JetStreamApiError, type JetStreamClient } from '@nats-io/jetstream';
import type { Logger } from '../../../shared/log.js';
import type { Registry } from '../../../shared/metrics.js';
import { chunkMsgId, chunkSubject, heartbeatSubject, type Heartbeat } from '../../../shared/protocol.js';
import { errorMessage } from '../../../shared/errors.js';
import { backoffDelay } from '../../../shared/backoff.js';
import type { SpooledChunk } from '../../spool/types.js';
import { ShipFailure, type SendResult, type Shipper, type ShipperHealth, type TransportState } from '../types.js';
import { transportMetrics, type TransportMetrics } from '../metrics.js';
import { natsConnectionOptions, type NatsTransportConfig } from './options.js';
import { settleBy } from '../../../shared/async.js';
import { redactText, redactUrl, redactUrls } from '../../../shared/redact.js';
import { natsMaxChunkBytes } from '../../limits.js';

export interface NatsShipperOptions {
  config: NatsTransportConfig;
  agentId: string;
  log: Logger;
  registry: Registry;
  /** called at every connect with the largest encoded chunk the server takes */
  onMaxChunkBytes?: (maxChunkBytes: number) => void;
}

export class NatsShipper implements Shipper {
  readonly transport = 'nats' as const;
  readonly subject: string;
  private readonly hbSubject: string;
  private readonly cfg: NatsTransportConfig;
  /** the servers as logged and shown: without `user:pass@` */
  private readonly servers: string;
  private readonly agentId: string;
  private readonly log: Logger;
  private readonly m: TransportMetrics;
  private readonly onMaxChunkBytes: ((maxChunkBytes: number) => void) | undefined;
  private connectOpts: NodeConnectionOptions | undefined;

  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private state: TransportState = 'connecting';
  private sinceMs = Date.now();
  private server: string | undefined;
  private lastConnectError = '';
  /** a publish problem other than the connection (no stream, timeouts), logged once per change */
  private publishIssue: { reason: string; message: string } | null = null;
  private stopping = false;
  private everConnected = false;
  private connectAttempt = 0;
  private retryTimer: NodeJS.Timeout | undefined;
  private wakeConnectLoop: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private readonly inflight = new Set<Promise<SendResult>>();

  constructor(opts: NatsShipperOptions) {
    this.cfg = opts.config;
    this.servers = redactUrls(opts.config.servers).join(', ');
    this.agentId = opts.agentId;
    this.subject = chunkSubject(opts.config.subjectPrefix, opts.agentId);
    this.hbSubject = heartbeatSubject(opts.config.heartbeatSubject, opts.agentId);
    this.log = opts.log.child({ component: 'shipper', transport: 'nats' });
    this.m = transportMetrics(opts.registry);
    this.onMaxChunkBytes = opts.onMaxChunkBytes;
  }

  /** Validates credentials and files (throws TransportError naming the key), then connects in the background. */
  start(): Promise<void> {
    try {
      this.connectOpts = natsConnectionOptions(this.cfg, this.agentId);
    } catch (err) {
      return Promise.reject(err instanceof Error ? err : new Error(String(err)));
    }
    this.loop = this.connectLoop();
    return Promise.resolve();
  }

  /** Resolves once connected (for tests and tools); rejects after `timeoutMs`. */
  async connected(timeoutMs: number): Promise<void> {
    const until = Date.now() + timeoutMs;
    while (this.state !== 'connected') {
      if (Date.now() > until) throw new ShipFailure('not-connected', `not connected to NATS after ${timeoutMs} ms: ${this.health().detail}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private setState(state: TransportState, server?: string): void {
    if (state === this.state && server === this.server) return;
    this.state = state;
    this.sinceMs = Date.now();
    if (server !== undefined) this.server = redactUrl(server);
    this.m.connected.set(state === 'connected' ? 1 : 0);
  }

  /** Initial connection (and again if the client gives up, e.g. after repeated auth failures). */
  private async connectLoop(): Promise<void> {
    while (!this.stopping) {
      let nc: NatsConnection;
      try {
        nc = await connect(this.connectOpts);
      } catch (err) {
        this.connectAttempt++;
        const msg = redactText(errorMessage(err));
        if (msg !== this.lastConnectError) {
          this.lastConnectError = msg;
          this.log.warn({ error: msg, servers: this.servers, attempt: this.connectAttempt }, 'cannot connect to NATS; retrying until it works');
        }
        this.setState('disconnected');
        const delay = backoffDelay({ initialMs: 500, maxMs: 10_000, multiplier: 2, jitter: 0.3 }, this.connectAttempt);
        await new Promise<void>((resolve) => {
          this.wakeConnectLoop = resolve;
          this.retryTimer = setTimeout(resolve, delay);
        });
        continue;
      }
      if (this.stopping) {
        await nc.close().catch(() => undefined);
        return;
      }
      this.connectAttempt = 0;
      this.lastConnectError = '';
      this.nc = nc;
      this.js = jetstream(nc, { timeout: this.cfg.publishTimeoutMs });
      const server = nc.getServer();
      if (this.everConnected) this.m.reconnects.inc();
      this.everConnected = true;
      this.setState('connected', server);
      this.log.info({ server, maxPayload: nc.info?.max_payload, subject: this.subject }, 'connected to NATS');
      this.announceLimit(nc);
      void this.watchStatus(nc);
      const closedErr = await nc.closed();
      this.nc = undefined;
      this.js = undefined;
      if (this.stopping) return;
      this.m.disconnects.inc();
      this.setState('disconnected');
      this.log.error({ err: closedErr }, 'the NATS connection was closed by the client library; connecting again');
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      switch (s.type) {
        case 'disconnect':
          this.m.disconnects.inc();
          this.setState('disconnected', s.server);
          this.log.warn({ server: s.server }, 'disconnected from NATS; reconnecting (chunks wait in the spool)');
          break;
        case 'reconnect':
          this.m.reconnects.inc();
          this.setState('connected', s.server);
          this.log.info({ server: s.server, maxPayload: nc.info?.max_payload }, 'reconnected to NATS');
          this.announceLimit(nc);
          break;
        case 'error':
          this.log.warn({ err: s.error }, 'NATS connection error');
          break;
        case 'ldm':
          this.log.info({ server: s.server }, 'NATS server entering lame duck mode; the client will move to another server');
          break;
        case 'staleConnection':
          this.log.warn('NATS connection is stale (no PONGs); reconnecting');
          break;
        default:
          break;
      }
    }
  }

  /** Tells the agent what the server (maybe another one of the cluster after a reconnect) takes. */
  private announceLimit(nc: NatsConnection): void {
    const maxPayload = nc.info?.max_payload;
    if (maxPayload === undefined || maxPayload <= 0) return;
    try {
      this.onMaxChunkBytes?.(natsMaxChunkBytes(maxPayload));
    } catch (err) {
      this.log.error({ err }, 'applying the server\'s max_payload failed');
    }
  }

  async send(chunks: readonly SpooledChunk[]): Promise<SendResult[]> {
    const js = this.js;
    const nc = this.nc;
    if (!js || !nc || this.state !== 'connected' || this.stopping) {
      const err = new ShipFailure('not-connected', `not connected to NATS: ${this.health().detail}`);
      return chunks.map(() => ({ retry: err }));
    }
    const maxPayload = nc.info?.max_payload ?? 0;
    return Promise.all(chunks.map((c) => this.track(this.publish(js, c, maxPayload))));
  }

  private track(p: Promise<SendResult>): Promise<SendResult> {
    this.inflight.add(p);
    void p.finally(() => this.inflight.delete(p));
    return p;
  }

  private async publish(js: JetStreamClient, chunk: SpooledChunk, maxPayload: number): Promise<SendResult> {
    if (maxPayload > 0 && chunk.bytes.length > natsMaxChunkBytes(maxPayload)) {
      return {
        fatal: new ShipFailure(
          'too-large',
          `chunk ${chunk.seq} is ${chunk.bytes.length} bytes, more than the NATS server's max_payload of ${maxPayload} takes with the message headers (cut before the agent learned this limit? later chunks are cut to fit); raise max_payload on the server to ship it`,
        ),
      };
    }
    try {
      await js.publish(this.subject, chunk.bytes, { msgID: chunkMsgId(this.agentId, chunk.seq, chunk.bytes), timeout: this.cfg.publishTimeoutMs });
      if (this.publishIssue) {
        this.log.info({ subject: this.subject, was: this.publishIssue.reason }, 'JetStream accepts chunks again');
        this.publishIssue = null;
      }
      return 'ok';
    } catch (err) {
      const failure = this.classify(err);
      if (this.publishIssue?.reason !== failure.reason) {
        this.publishIssue = { reason: failure.reason, message: failure.message };
        this.log.warn({ subject: this.subject, reason: failure.reason, err: failure }, failure.message);
      }
      return { retry: failure };
    }
  }

  private classify(err: unknown): ShipFailure {
    // js.publish turns "no responders" into JetStreamNotEnabled (not exported) with the RequestError as cause.
    const cause = err instanceof Error ? err.cause : undefined;
    const noResponders = (e: unknown): boolean => e instanceof natsErrors.RequestError && e.isNoResponders();
    if (noResponders(err) || noResponders(cause) || err instanceof natsErrors.NoRespondersError) {
      return new ShipFailure(
        'no-stream',
        `no JetStream stream captures subject ${this.subject} (no responders): the gateway creates it when it starts; chunks wait in the spool`,
        { cause: err },
      );
    }
    if (err instanceof natsErrors.TimeoutError) {
      return new ShipFailure('timeout', `no PubAck for a chunk within ${this.cfg.publishTimeoutMs} ms (transport.nats.publishTimeoutMs)`, { cause: err });
    }
    if (err instanceof JetStreamApiError) {
      return new ShipFailure('rejected', `JetStream refused the chunk for now: ${err.message} (code ${err.code})`, { cause: err });
    }
    if (err instanceof natsErrors.ClosedConnectionError || err instanceof natsErrors.ConnectionError) {
      return new ShipFailure('not-connected', `NATS connection lost while publishing: ${errorMessage(err)}`, { cause: err });
    }
    return new ShipFailure('error', `publishing to JetStream failed: ${errorMessage(err)}`, { cause: err });
  }

  heartbeat(hb: Heartbeat): Promise<void> {
    const nc = this.nc;
    if (!nc || this.state !== 'connected') return Promise.reject(new ShipFailure('not-connected', 'heartbeat not sent: not connected to NATS'));
    try {
      nc.publish(this.hbSubject, JSON.stringify(hb));
      return Promise.resolve();
    } catch (err) {
      return Promise.reject(new ShipFailure('error', `heartbeat not sent: ${errorMessage(err)}`, { cause: err }));
    }
  }

  health(): ShipperHealth {
    const since = new Date(this.sinceMs).toISOString();
    let detail: string;
    if (this.state === 'connected') {
      detail = `connected to ${this.server ?? 'NATS'} since ${since}`;
      if (this.publishIssue) detail += `; but ${this.publishIssue.message}`;
    } else if (this.state === 'connecting') {
      detail = `connecting to ${this.servers}`;
    } else if (this.state === 'closed') {
      detail = 'closed';
    } else {
      detail = `disconnected since ${since} (servers ${this.servers})${this.lastConnectError ? `: ${this.lastConnectError}` : ''}`;
    }
    const h: ShipperHealth = { ok: this.state === 'connected', transport: 'nats', state: this.state, detail, sinceMs: this.sinceMs };
    if (this.server !== undefined) h.server = this.server;
    return h;
  }

  /** Waits for publishes under way until `deadlineMs` (ms since epoch), then closes the connection. */
  async stop(deadlineMs: number): Promise<void> {
    this.stopping = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    this.wakeConnectLoop?.();
    await settleBy(this.inflight, deadlineMs);
    const nc = this.nc;
    if (nc && !nc.isClosed()) {
      const closing = nc.close().catch((err: unknown) => this.log.warn({ err }, 'closing the NATS connection failed'));
      await settleBy([closing], Math.max(Date.now() + 100, deadlineMs));
    }
    // The connect loop may be inside a connect attempt: wait for it only until the deadline.
    if (this.loop && !(await settleBy([this.loop], Math.max(Date.now() + 100, deadlineMs)))) {
      this.log.warn('the NATS connect loop did not end before the stop deadline');
    }
    this.setState('closed');
  }
}
