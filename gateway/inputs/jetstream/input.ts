/**
 * JetStream input: pulls agents' chunks from the shared durable consumer, hands them to the
 * sink, and acknowledges each message only after the sink answered ok for its chunk.
 *
 * Two tasks per input. The pump pulls messages (fetches of up to `fetchBatch`) into a queue and
 * stops pulling while `fetchBatch` messages wait; every message is held (see below) from the
 * moment it arrives. The processor takes whatever is queued (up to `fetchBatch`: one message
 * at a trickle, full batches under load, so latency stays low without a fetch timeout), decodes each (shared/chunk/codec.ts, never throws anything but
 * ChunkMalformedError / ChunkVersionError), check its topic against `nats.allowTopics`, send the
 * whole batch to the sink in one call, then per message:
 *   ok (or duplicate)  ack
 *   fatal              republish to `deadLetterSubject` (kept by the dead-letter stream, see
 *                      setup.ts) with the reason in headers, then term(); if that publish
 *                      fails, nak so the chunk comes back: nothing is dropped
 *   retry              kept: the input pauses fetching, waits (backoff, or the sink's hint),
 *                      and sends the retried chunks again, in the same order, before anything
 *                      newer. Holding instead of nak()ing keeps a file's chunks in order
 *                      through a Kafka outage and stops the input from spinning on a backlog
 *                      it cannot deliver; the backlog stays in JetStream.
 * Messages held longer than ack_wait/2 (slow produce, Kafka down) get `working()` so JetStream
 * does not redeliver them to another gateway meanwhile. On stop, retried or unfinished messages
 * are nak()ed (short delay) so another gateway takes them at once.
 *
 * Malformed chunks and chunks for a forbidden topic are dead-lettered the same way, named in
 * the log by their Nats-Msg-Id and stream sequence, and counted.
 *
 * Ordering: with one gateway, a file's chunks reach the sink in stream order, also across
 * retries. Several gateways sharing the consumer each get different messages, so chunks of one
 * file may be produced by two gateways at the same time: per-file order across gateways is not
 * guaranteed (a later capability: pinned consumers / shard leases).
 *
 * Heartbeats: core NATS subscription to `<heartbeatSubject>.*`, parsed with parseHeartbeat,
 * passed to `onHeartbeat`. The connection reconnects forever; health() reflects it.
 */
import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, headers as natsHeaders, nkeyAuthenticator } from '@nats-io/transport-node';
import type { NatsConnection, NodeConnectionOptions, Subscription } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { Registry } from 'prom-client';
import type { Sink, SinkOutcome } from '../../sinks/sink.js';
import type { Logger } from '../../../shared/log.js';
import { Counter, Gauge } from '../../../shared/metrics.js';
import { decodeChunk, type DecodedChunk } from '../../../shared/chunk/codec.js';
import { parseHeartbeat, type Heartbeat } from '../../../shared/protocol.js';
import { TopicForbiddenError, TransportError, errorMessage } from '../../../shared/errors.js';
import { TopicPolicy } from '../../topics.js';
import { ensureJetStream, type JetStreamConfig } from './setup.js';

export interface JetStreamInputOptions {
  config: JetStreamConfig;
  sink: Sink;
  log: Logger;
  registry: Registry;
  onHeartbeat?: (hb: Heartbeat) => void;
}

/** The credential name this input gives the sink (SinkChunk.source). */
export const NATS_SOURCE = 'nats';

const FETCH_EXPIRES_MS = 5000;

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

class InputMetrics {
  readonly chunks: Counter<'topic'>;
  readonly records: Counter<'topic'>;
  readonly bytes: Counter<'topic'>;
  readonly acked: Counter<'topic'>;
  readonly redeliveries: Counter;
  readonly deadLettered: Counter<'reason'>;
  readonly errors: Counter<'type'>;
  readonly retries: Counter;
  readonly held: Gauge;

  constructor(r: Registry) {
    const registers = [r];
    this.chunks = metric(r, 'ferry_gateway_jetstream_chunks_total', () => new Counter({ name: 'ferry_gateway_jetstream_chunks_total', help: 'chunks received from JetStream (decoded), by topic', labelNames: ['topic'], registers }));
    this.records = metric(r, 'ferry_gateway_jetstream_records_total', () => new Counter({ name: 'ferry_gateway_jetstream_records_total', help: 'records in chunks received from JetStream, by topic', labelNames: ['topic'], registers }));
    this.bytes = metric(r, 'ferry_gateway_jetstream_bytes_total', () => new Counter({ name: 'ferry_gateway_jetstream_bytes_total', help: 'record bytes in chunks received from JetStream, by topic', labelNames: ['topic'], registers }));
    this.acked = metric(r, 'ferry_gateway_jetstream_acked_chunks_total', () => new Counter({ name: 'ferry_gateway_jetstream_acked_chunks_total', help: 'chunks acknowledged to JetStream after the sink had them, by topic', labelNames: ['topic'], registers }));
    this.redeliveries = metric(r, 'ferry_gateway_jetstream_redeliveries_total', () => new Counter({ name: 'ferry_gateway_jetstream_redeliveries_total', help: 'messages JetStream delivered again (info.redelivered)', registers }));
    this.deadLettered = metric(r, 'ferry_gateway_jetstream_dead_letter_chunks_total', () => new Counter({ name: 'ferry_gateway_jetstream_dead_letter_chunks_total', help: 'messages sent to the dead-letter subject, by reason (malformed, forbidden-topic, refused)', labelNames: ['reason'], registers }));
    this.errors = metric(r, 'ferry_gateway_jetstream_errors_total', () => new Counter({ name: 'ferry_gateway_jetstream_errors_total', help: 'errors of the JetStream input, by type', labelNames: ['type'], registers }));
    this.retries = metric(r, 'ferry_gateway_jetstream_retried_chunks_total', () => new Counter({ name: 'ferry_gateway_jetstream_retried_chunks_total', help: 'chunks the sink answered retry, held and sent again', registers }));
    this.held = metric(r, 'ferry_gateway_jetstream_held_messages', () => new Gauge({ name: 'ferry_gateway_jetstream_held_messages', help: 'messages fetched and not yet acked, termed or nak()ed', registers }));
  }
}

interface Item {
  msg: JsMsg;
  chunk: DecodedChunk;
}

function msgId(msg: JsMsg): string {
  return msg.headers?.get('Nats-Msg-Id') || '(no Nats-Msg-Id)';
}

export class JetStreamInput {
  private readonly config: JetStreamConfig;
  private readonly sink: Sink;
  private readonly log: Logger;
  private readonly metrics: InputMetrics;
  private readonly policy: TopicPolicy;
  private readonly onHeartbeat: ((hb: Heartbeat) => void) | undefined;
  private nc: NatsConnection | undefined;
  private js: JetStreamClient | undefined;
  private consumer: Consumer | undefined;
  private hbSub: Subscription | undefined;
  private loopDone: Promise<void> | undefined;
  private stopping = false;
  private connected = false;
  private paused = false;
  private fetchFailures = 0;
  private lastError: string | undefined;
  private readonly held = new Set<JsMsg>();
  private heldSince = new Map<JsMsg, number>();
  private workingTimer: NodeJS.Timeout | undefined;
  private readonly sleepers = new Set<() => void>();
  private stopDeadline = Infinity;
  private readonly fetches = new Set<ConsumerMessages>();
  /** fetched, held, not yet given to the sink */
  private readonly queue: JsMsg[] = [];
  private wakePump: (() => void) | undefined;
  private wakeProcessor: (() => void) | undefined;

  constructor(opts: JetStreamInputOptions) {
    this.config = opts.config;
    this.sink = opts.sink;
    this.log = opts.log.child({ component: 'jetstream-input' });
    this.metrics = new InputMetrics(opts.registry);
    this.policy = new TopicPolicy(opts.config.allowTopics);
    this.onHeartbeat = opts.onHeartbeat;
  }

  private connectOptions(): NodeConnectionOptions {
    const c = this.config;
    const o: NodeConnectionOptions = {
      servers: [...c.servers],
      name: 'ferry-gateway',
      maxReconnectAttempts: -1,
      reconnectTimeWait: 1000,
      timeout: 10_000,
    };
    if (c.user !== undefined) o.user = c.user;
    if (c.pass !== undefined) o.pass = c.pass;
    if (c.token !== undefined) o.token = c.token;
    if (c.credsFile) o.authenticator = credsAuthenticator(readFileSync(c.credsFile));
    else if (c.nkeySeedFile) o.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(c.nkeySeedFile, 'utf8').trim()));
    if (c.tls) {
      o.tls = {
        ...(c.tls.caFile ? { caFile: c.tls.caFile } : {}),
        ...(c.tls.certFile ? { certFile: c.tls.certFile } : {}),
        ...(c.tls.keyFile ? { keyFile: c.tls.keyFile } : {}),
      };
    }
    return o;
  }

  async start(): Promise<void> {
    const c = this.config;
    try {
      this.nc = await connect(this.connectOptions());
    } catch (err) {
      throw new TransportError(`cannot connect to NATS at ${c.servers.join(', ')} (nats.servers): ${errorMessage(err)}`, { cause: err });
    }
    this.connected = true;
    const nc = this.nc;
    void this.watchStatus(nc);
    try {
      const jsm = await jetstreamManager(nc);
      await ensureJetStream(jsm, c, this.log);
      this.js = jetstream(nc);
      this.consumer = await this.js.consumers.get(c.stream, c.consumer);
    } catch (err) {
      await nc.close().catch(() => undefined);
      this.connected = false;
      if (err instanceof TransportError) throw err;
      throw new TransportError(`cannot set up JetStream stream "${c.stream}" / consumer "${c.consumer}": ${errorMessage(err)}`, { cause: err });
    }
    this.hbSub = nc.subscribe(`${c.heartbeatSubject}.*`, {
      callback: (err, msg) => {
        if (err) return;
        let hb: Heartbeat | null = null;
        try {
          hb = parseHeartbeat(msg.json());
        } catch {
          hb = null;
        }
        if (hb === null) {
          this.metrics.errors.inc({ type: 'bad-heartbeat' });
          this.log.debug({ subject: msg.subject }, 'ignoring a heartbeat that does not parse');
          return;
        }
        try {
          this.onHeartbeat?.(hb);
        } catch (e) {
          this.log.warn({ err: errorMessage(e) }, 'heartbeat handler failed');
        }
      },
    });
    // The server registers the subscription asynchronously: a round trip makes sure it has,
    // so start() resolves with heartbeats already being received.
    await nc.flush();
    const every = Math.max(500, Math.floor(c.ackWaitMs / 3));
    this.workingTimer = setInterval(() => this.keepHeldAlive(), every);
    this.workingTimer.unref();
    this.log.info({ servers: c.servers, stream: c.stream, consumer: c.consumer, allowTopics: this.policy.describe() }, 'JetStream input started');
    this.loopDone = this.loop();
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        this.connected = false;
        this.log.warn({ server: 'server' in s ? s.server : undefined }, 'disconnected from NATS; reconnecting');
      } else if (s.type === 'reconnect') {
        this.connected = true;
        this.log.info({ server: 'server' in s ? s.server : undefined }, 'reconnected to NATS');
      }
    }
  }

  /** working() for messages held longer than ack_wait/2, so JetStream does not redeliver them. */
  private keepHeldAlive(): void {
    const now = Date.now();
    const half = this.config.ackWaitMs / 2;
    for (const [msg, since] of this.heldSince) {
      if (now - since >= half) {
        try {
          msg.working();
        } catch {
          // disconnected: JetStream will redeliver after ack_wait; the sink dedups in exactly-once mode
        }
        this.heldSince.set(msg, now);
      }
    }
  }

  private hold(msgs: JsMsg[]): void {
    const now = Date.now();
    for (const m of msgs) {
      this.held.add(m);
      this.heldSince.set(m, now);
    }
    this.metrics.held.set(this.held.size);
  }

  private release(msg: JsMsg): void {
    this.held.delete(msg);
    this.heldSince.delete(msg);
    this.metrics.held.set(this.held.size);
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(t);
        this.sleepers.delete(done);
        resolve();
      };
      const t = setTimeout(done, ms);
      this.sleepers.add(done);
    });
  }

  /**
   * The pump: pulls messages (one fetch of up to `fetchBatch` at a time) into `queue`, holding
   * each from the moment it arrives. It pulls again only while fewer than `fetchBatch` messages
   * wait, so what the gateway holds stays bounded (back pressure onto JetStream).
   */
  private async pump(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      if (this.queue.length >= this.config.fetchBatch) {
        await new Promise<void>((resolve) => (this.wakePump = resolve));
        continue;
      }
      try {
        // By count (max_messages and max_bytes exclude each other): memory held is at most
        // about 2 x fetchBatch x the largest chunk (NATS max_payload).
        const iter = await this.consumer!.fetch({ max_messages: this.config.fetchBatch, expires: FETCH_EXPIRES_MS });
        this.fetches.add(iter);
        try {
          for await (const m of iter) {
            this.hold([m]);
            this.queue.push(m);
            this.wakeProcessor?.();
          }
        } finally {
          this.fetches.delete(iter);
        }
        failures = 0;
        this.fetchFailures = 0;
        if (!this.paused) this.lastError = undefined;
      } catch (err) {
        if (this.stopping) break;
        failures++;
        this.fetchFailures = failures;
        this.lastError = errorMessage(err);
        this.metrics.errors.inc({ type: 'fetch' });
        if (failures === 1 || failures % 30 === 0) this.log.warn({ err: this.lastError, failures }, 'JetStream fetch failed; retrying');
        await this.sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
        if (failures % 5 === 0) await this.reensure();
      }
    }
  }

  /** The processor: takes what the pump queued (up to fetchBatch) and produces it, batch after batch. */
  private async loop(): Promise<void> {
    const pump = this.pump();
    while (!this.stopping) {
      if (this.queue.length === 0) {
        await new Promise<void>((resolve) => (this.wakeProcessor = resolve));
        this.wakeProcessor = undefined;
        continue;
      }
      const batch = this.queue.splice(0, this.config.fetchBatch);
      this.wakePump?.();
      this.wakePump = undefined;
      await this.process(batch);
    }
    this.wakePump?.();
    await pump;
    for (const m of this.queue.splice(0)) this.nakMsg(m, 0);
  }

  /** After repeated fetch errors: the stream or consumer may have been deleted; set them up again. */
  private async reensure(): Promise<void> {
    if (!this.nc || this.nc.isClosed() || !this.connected) return;
    try {
      await ensureJetStream(await jetstreamManager(this.nc), this.config, this.log);
      this.consumer = await this.js!.consumers.get(this.config.stream, this.config.consumer);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'could not check the JetStream stream and consumer');
    }
  }

  private async process(msgs: JsMsg[]): Promise<void> {
    let items: Item[] = [];
    for (const msg of msgs) {
      if (msg.info.redelivered) this.metrics.redeliveries.inc();
      let chunk: DecodedChunk;
      try {
        chunk = decodeChunk(msg.data);
      } catch (err) {
        this.log.error({ msgId: msgId(msg), streamSeq: msg.seq, subject: msg.subject, bytes: msg.data.length, err: errorMessage(err) }, 'malformed chunk; dead-lettering it');
        await this.deadLetter(msg, 'malformed', err);
        continue;
      }
      const topic = chunk.header.topic;
      this.metrics.chunks.inc({ topic });
      this.metrics.records.inc({ topic }, chunk.records.length);
      this.metrics.bytes.inc({ topic }, chunk.dataBytes);
      if (!this.policy.allows(topic)) {
        const err = new TopicForbiddenError(topic, `topic "${topic}" is not allowed for chunks arriving over NATS (nats.allowTopics: ${this.policy.describe()})`);
        this.log.error({ msgId: msgId(msg), streamSeq: msg.seq, agent: chunk.header.agentId, topic }, `${err.message}; dead-lettering the chunk`);
        await this.deadLetter(msg, 'forbidden-topic', err);
        continue;
      }
      items.push({ msg, chunk });
    }

    let attempt = 0;
    while (items.length > 0) {
      let outcomes: SinkOutcome[];
      try {
        outcomes = await this.sink.send(items.map((i) => ({ chunk: i.chunk, source: NATS_SOURCE })));
      } catch (err) {
        // The sink contract resolves outcomes; a throw is a bug, treated as retry.
        const error = err instanceof Error ? err : new Error(String(err));
        outcomes = items.map(() => ({ kind: 'retry', error }));
      }
      const retry: Item[] = [];
      let retryAfter = 0;
      let firstError: Error | undefined;
      for (const [i, item] of items.entries()) {
        const o = outcomes[i] ?? { kind: 'retry', error: new Error('the sink returned no outcome for this chunk') };
        if (o.kind === 'ok') {
          this.ackMsg(item.msg);
          this.metrics.acked.inc({ topic: item.chunk.header.topic });
        } else if (o.kind === 'fatal') {
          this.log.error({ msgId: msgId(item.msg), streamSeq: item.msg.seq, topic: item.chunk.header.topic, err: o.error.message }, 'Kafka refused the chunk; dead-lettering it');
          await this.deadLetter(item.msg, 'refused', o.error);
        } else {
          retry.push(item);
          retryAfter = Math.max(retryAfter, o.retryAfterMs ?? 0);
          firstError ??= o.error;
        }
      }
      items = retry;
      if (items.length === 0) break;
      this.metrics.retries.inc(items.length);
      attempt++;
      if (this.stopping && Date.now() >= this.stopDeadline - 100) break;
      this.paused = true;
      // The sink's hint when it gives one (it knows how long Kafka has been failing), else ours.
      const wait = retryAfter > 0 ? Math.min(60_000, retryAfter) : Math.min(5000, 200 * 2 ** Math.min(attempt - 1, 5));
      this.lastError = firstError?.message;
      if (attempt === 1 || attempt % 10 === 0) {
        this.log.warn({ chunks: items.length, attempt, waitMs: wait, err: firstError?.message }, 'sink cannot take chunks now; holding them and retrying');
      }
      await this.sleep(this.stopping ? Math.min(wait, Math.max(0, this.stopDeadline - Date.now() - 100)) : wait);
    }
    this.paused = false;
    if (attempt > 0 && items.length === 0) this.log.info({ attempts: attempt }, 'sink took the held chunks');
    // Stopping with chunks still refused for now: give them back to JetStream.
    for (const item of items) this.nakMsg(item.msg, 1000);
  }

  private ackMsg(msg: JsMsg): void {
    try {
      msg.ack();
    } catch (err) {
      this.metrics.errors.inc({ type: 'ack' });
      this.log.warn({ msgId: msgId(msg), err: errorMessage(err) }, 'ack failed; JetStream will redeliver the chunk');
    }
    this.release(msg);
  }

  private nakMsg(msg: JsMsg, delayMs: number): void {
    try {
      msg.nak(delayMs);
    } catch {
      // disconnected: redelivered after ack_wait anyway
    }
    this.release(msg);
  }

  /**
   * Republishes the message to the dead-letter subject with the reason, then terms it. When the
   * dead-letter publish fails, the message is nak()ed (it comes back later) instead.
   */
  private async deadLetter(msg: JsMsg, reason: 'malformed' | 'forbidden-topic' | 'refused', err: unknown): Promise<void> {
    const h = natsHeaders();
    const id = msg.headers?.get('Nats-Msg-Id');
    h.set('Ferry-Dead-Reason', reason);
    h.set('Ferry-Dead-Error', errorMessage(err).replace(/[\r\n]+/g, ' ').slice(0, 1000));
    h.set('Ferry-Dead-Subject', msg.subject);
    h.set('Ferry-Dead-Stream', this.config.stream);
    h.set('Ferry-Dead-Stream-Seq', String(msg.seq));
    if (id) h.set('Ferry-Dead-Msg-Id', id);
    try {
      await this.js!.publish(this.config.deadLetterSubject, msg.data, { headers: h, ...(id ? { msgID: `${id}/dead` } : {}) });
    } catch (e) {
      this.metrics.errors.inc({ type: 'dead-letter' });
      this.log.error({ msgId: id, streamSeq: msg.seq, err: errorMessage(e), subject: this.config.deadLetterSubject }, 'dead-letter publish failed; the chunk goes back to JetStream');
      this.nakMsg(msg, 5000);
      return;
    }
    this.metrics.deadLettered.inc({ reason });
    try {
      msg.term(`ferry: ${reason}`);
    } catch {
      // disconnected: it comes back, and is dead-lettered again (deduplicated by msgID)
    }
    this.release(msg);
  }

  async stop(deadlineMs: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    this.stopDeadline = deadlineMs;
    for (const wake of [...this.sleepers]) wake();
    this.wakeProcessor?.();
    this.wakePump?.();
    // End pending pulls now instead of waiting for them to expire; what they delivered is held
    // and nak()ed below.
    for (const f of this.fetches) void f.close().catch(() => undefined);
    if (this.loopDone) {
      let timer: NodeJS.Timeout | undefined;
      const timedOut = await Promise.race([
        this.loopDone.then(() => false),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(true), Math.max(0, deadlineMs - Date.now())))),
      ]);
      clearTimeout(timer);
      if (timedOut) this.log.warn({ held: this.held.size }, 'JetStream input stop deadline reached; giving held chunks back');
    }
    for (const m of [...this.held]) this.nakMsg(m, 0);
    if (this.workingTimer) clearInterval(this.workingTimer);
    this.hbSub?.unsubscribe();
    const nc = this.nc;
    if (nc && !nc.isClosed()) {
      // Push the last acks out before closing.
      await Promise.race([nc.flush().catch(() => undefined), new Promise((r) => setTimeout(r, Math.max(100, Math.min(2000, deadlineMs - Date.now()))))]);
      await nc.close().catch(() => undefined);
    }
    this.connected = false;
    this.log.info('JetStream input stopped');
  }

  health(): { ready: boolean; detail: string } {
    if (!this.nc) return { ready: false, detail: 'JetStream input not started' };
    if (this.stopping) return { ready: false, detail: 'JetStream input stopping' };
    if (!this.connected) return { ready: false, detail: `NATS disconnected; reconnecting${this.lastError ? ` (${this.lastError})` : ''}` };
    if (this.fetchFailures > 1) return { ready: false, detail: `JetStream fetch failing (${this.fetchFailures} times): ${this.lastError ?? 'unknown error'}` };
    if (this.paused) return { ready: true, detail: `NATS connected; holding ${this.held.size} chunks the sink refused for now (${this.lastError ?? 'retry'})` };
    return { ready: true, detail: `NATS connected (${this.config.stream}/${this.config.consumer}, ${this.held.size} in flight)` };
  }
}
