/**
 * JetStream input: pulls agents' chunks from the shared durable consumer, hands them to the
 * sink, and acknowledges each message only after the sink answered ok for its chunk.
 *
 * Two tasks per input. The pump pulls messages into a queue (fetch-queue.ts: each fetch asks for
 * what fits in `fetchBatch` messages and `maxQueuedBytes`) and stops pulling while the queue is
 * full, or while held agents keep `maxHeldBytes` / `maxAckPending - fetchBatch` messages (at
 * least half of maxAckPending); every message is leased (leases.ts) from the moment it arrives.
 * The processor takes whatever is queued (up to `fetchBatch` and `maxQueuedBytes`: one message
 * at a trickle, full batches under load, so latency stays low without a fetch timeout) and
 * checks each message in stream order (`admit`):
 *   lease ran out (no working() got through within ack_wait: JetStream redelivered it)
 *                         dropped: no produce, no ack; the redelivery carries it (counted, logged)
 *   delivered more than `maxDeliveries` times    dead-letter `max-deliveries` (before decoding)
 *   its agent is held (see below)                kept behind the agent's held chunk, in order
 *   does not decode (shared/chunk/codec.ts)      dead-letter `malformed`
 *   identity (identity.ts): the subject's agent id must be `header.agentId` and the Nats-Msg-Id
 *   the chunk id `agentId/seq/<digest>` (or `agentId/seq`)  dead-letter `identity`
 *   reserved topic (kafka.committedTopic, `__*`, `_*`: gateway/topics.ts `reserved`)
 *                                                dead-letter `internal-topic` (hostile)
 *   topic outside `nats.allowTopics`             its agent is held (a setting: the operator may
 *                                                allow it and restart)
 * Admitted chunks are decoded and sent in slices of at most `maxDecodedBytes` record bytes and
 * `maxDecodedRecords` records (at least one chunk), so a fetch of record-dense chunks never has
 * more than about that decoded at once. Per chunk of a slice, the sink's outcome:
 *   ok (or duplicate)     ack
 *   fatal, fault chunk    republish to `deadLetterSubject` (kept by the dead-letter stream, see
 *                         setup.ts) with the reason in headers, then term(); if that publish
 *                         fails, nak so the chunk comes back: nothing is dropped
 *   fatal, fault setting  (topic missing, authorization refused) its agent is held (held.ts):
 *                         never dead-lettered; the chunk is tried again alone with backoff (1 s
 *                         to `holdRetryMaxMs`), the agent's later chunks wait behind it in
 *                         order, other agents keep flowing; /readyz, metrics and logs show it
 *   retry                 kept: the input pauses fetching, waits (backoff, or the sink's hint),
 *                         and sends the retried chunks again, in the same order, before anything
 *                         newer. Holding instead of nak()ing keeps a file's chunks in order
 *                         through a Kafka outage and stops the input from spinning on a backlog
 *                         it cannot deliver; the backlog stays in JetStream.
 * Within one agent the earliest chunk not produced decides: the agent's later chunks of the
 * same slice follow it (held behind it, or retried with it), so an agent's order holds.
 * Holding is per agent because one agent's missing topic must not stop the others; JetStream
 * cannot skip an agent's messages, so what waits behind a held chunk stays leased here (memory,
 * max_ack_pending): at the limits above the whole input stops fetching, visibly, until a held
 * agent moves.
 *
 * Leased messages get `working()` once half of ack_wait passed, so JetStream does not redeliver
 * them to another gateway meanwhile. On stop, unfinished messages are nak()ed (short delay) so
 * another gateway takes them at once; at the stop deadline the sink's `abortInFlight()` is
 * awaited first (bounded by the deadline), and chunks still in the sink's hands when it did not
 * resolve in time are not nak()ed (they come back after ack_wait) so no second gateway commits
 * them while this one still could.
 *
 * Ordering: with one gateway, a file's chunks reach the sink in stream order, also across
 * retries and holds. Several gateways sharing the consumer each get different messages, so
 * chunks of one file may be produced by two gateways at the same time: per-file order across
 * gateways is not guaranteed (a later capability: pinned consumers / shard leases).
 *
 * Heartbeats: core NATS subscription to `<heartbeatSubject>.>` (agent ids may hold dots),
 * parsed with parseHeartbeat,
 * dropped (counted) unless the subject names the heartbeat's agentId, passed to `onHeartbeat`.
 * The connection reconnects forever; health() reflects it. Server URLs are redacted
 * (shared/redact.ts) in every log line, error and health detail.
 */
import { connect, headers as natsHeaders } from '@nats-io/transport-node';
import type { NatsConnection, Subscription } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import type { Consumer, ConsumerMessages, JetStreamClient, JsMsg } from '@nats-io/jetstream';
import type { Registry } from 'prom-client';
import type { Sink, SinkOutcome } from '../../sinks/sink.js';
import type { Logger } from '../../../shared/log.js';
import { decodeChunk, type DecodedChunk } from '../../../shared/chunk/codec.js';
import { parseHeartbeat, type Heartbeat } from '../../../shared/protocol.js';
import { TransportError, errorMessage } from '../../../shared/errors.js';
import { redactText, redactUrl, redactUrls } from '../../../shared/redact.js';
import { TopicPolicy, type ReservedTopics } from '../../topics.js';
import { ensureJetStream, type JetStreamConfig } from './setup.js';
import { natsConnectOptions } from './connect.js';
import { chunkIdentityProblem, heartbeatIdentityOk, subjectAgentId } from './identity.js';
import { Leases } from './leases.js';
import { HeldAgents } from './held.js';
import { FetchQueue } from './fetch-queue.js';
import { JetStreamTelemetry, type DeadReason, type HoldReason } from './telemetry.js';

export interface JetStreamInputOptions {
  config: JetStreamConfig;
  sink: Sink;
  log: Logger;
  registry: Registry;
  onHeartbeat?: (hb: Heartbeat) => void;
  /**
   * Topics no chunk may target whatever `allowTopics` says (kafka.committedTopic, `__*`, `_*`;
   * gateway/topics.ts): such a chunk is hostile and dead-lettered. Default: DEFAULT_RESERVED.
   */
  reserved?: ReservedTopics;
}

/** The credential name this input gives the sink (SinkChunk.source). */
export const NATS_SOURCE = 'nats';

const FETCH_EXPIRES_MS = 5000;
/** nats-server's max_payload when the server does not say (1 MiB) */
const NATS_DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/**
 * nak() delay on stop. The server still holds our pending pull requests (a pull cannot be
 * cancelled): a message nak()ed without delay goes into one of them, bounces, and comes back
 * behind the later ones. Delayed past our connection's close, they come back in stream order.
 */
const STOP_NAK_DELAY_MS = 500;

interface Item {
  msg: JsMsg;
  chunk: DecodedChunk;
  agent: string;
}

function msgId(msg: JsMsg): string | undefined {
  return msg.headers?.get('Nats-Msg-Id') || undefined;
}

/** What names a message in a log line; values an agent chose are capped. */
function fields(msg: JsMsg, chunk?: DecodedChunk): Record<string, unknown> {
  const out: Record<string, unknown> = { msgId: (msgId(msg) ?? '(no Nats-Msg-Id)').slice(0, 200), streamSeq: msg.seq, subject: msg.subject.slice(0, 300) };
  if (chunk) Object.assign(out, { agent: chunk.header.agentId, topic: chunk.header.topic });
  return out;
}

export class JetStreamInput {
  private readonly config: JetStreamConfig;
  private readonly sink: Sink;
  private readonly tele: JetStreamTelemetry;
  private readonly log: Logger;
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
  /** every message fetched and not yet acked, termed, nak()ed or dropped */
  private readonly leases: Leases<JsMsg>;
  /** agents whose oldest chunk a setting refuses, with the chunks waiting behind it */
  private readonly held: HeldAgents<JsMsg>;
  /** messages of the sink call under way */
  private readonly inFlight = new Set<JsMsg>();
  /** counted in the received metrics already (a held chunk is admitted more than once) */
  private readonly counted = new WeakSet<JsMsg>();
  private workingTimer: NodeJS.Timeout | undefined;
  private readonly sleepers = new Set<() => void>();
  /** the processor gives up retrying at this time (ms since epoch) once stopping */
  private stopDeadline = Infinity;
  private readonly fetches = new Set<ConsumerMessages>();
  /** fetched, leased, not yet given to the sink */
  private readonly queue: FetchQueue<JsMsg>;
  private wakePump: (() => void) | undefined;
  private wakeProcessor: (() => void) | undefined;

  constructor(opts: JetStreamInputOptions) {
    this.config = opts.config;
    this.sink = opts.sink;
    this.log = opts.log.child({ component: 'jetstream-input' });
    this.tele = new JetStreamTelemetry(this.log, opts.registry);
    this.policy = new TopicPolicy(opts.config.allowTopics, opts.reserved);
    this.onHeartbeat = opts.onHeartbeat;
    this.leases = new Leases(opts.config.ackWaitMs);
    this.queue = new FetchQueue({ maxMessages: opts.config.fetchBatch, maxBytes: opts.config.maxQueuedBytes, largestMessage: NATS_DEFAULT_MAX_PAYLOAD });
    this.held = new HeldAgents({ maxMs: opts.config.holdRetryMaxMs, size: (m) => m.data.length });
  }

  async start(): Promise<void> {
    const c = this.config;
    const servers = redactUrls(c.servers);
    try {
      this.nc = await connect(natsConnectOptions(this.config));
    } catch (err) {
      throw new TransportError(`cannot connect to NATS at ${servers.join(', ')} (nats.servers): ${redactText(errorMessage(err))}`, { cause: err });
    }
    this.connected = true;
    const nc = this.nc;
    if (nc.info?.max_payload) this.queue.largestAllowed(nc.info.max_payload);
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
      throw new TransportError(`cannot set up JetStream stream "${c.stream}" / consumer "${c.consumer}": ${redactText(errorMessage(err))}`, { cause: err });
    }
    this.hbSub = nc.subscribe(`${c.heartbeatSubject}.>`, {
      callback: (err, msg) => {
        if (!err) this.heartbeat(msg.subject, () => msg.json());
      },
    });
    // The server registers the subscription asynchronously: a round trip makes sure it has,
    // so start() resolves with heartbeats already being received.
    await nc.flush();
    this.workingTimer = setInterval(() => this.keepLeases(), Math.max(100, Math.floor(c.ackWaitMs / 4)));
    this.workingTimer.unref();
    this.log.info({ servers, stream: c.stream, consumer: c.consumer, allowTopics: this.policy.describe() }, 'JetStream input started');
    this.loopDone = this.loop();
  }

  private heartbeat(subject: string, json: () => unknown): void {
    let hb: Heartbeat | null = null;
    try {
      hb = parseHeartbeat(json());
    } catch {
      hb = null;
    }
    if (hb === null) {
      this.tele.error('bad-heartbeat', { subject }, 'ignoring a heartbeat that does not parse', 'debug');
      return;
    }
    if (!heartbeatIdentityOk(this.config.heartbeatSubject, subject, hb.agentId)) {
      this.tele.error('heartbeat-identity', { subject, agentId: hb.agentId.slice(0, 160) }, 'ignoring a heartbeat whose agentId is not the agent its subject names', 'debug');
      return;
    }
    try {
      this.onHeartbeat?.(hb);
    } catch (e) {
      this.log.warn({ err: errorMessage(e) }, 'heartbeat handler failed');
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      const server = 'server' in s && typeof s.server === 'string' ? redactUrl(s.server) : undefined;
      if (s.type === 'disconnect') {
        this.connected = false;
        this.log.warn({ server }, 'disconnected from NATS; reconnecting');
      } else if (s.type === 'reconnect') {
        this.connected = true;
        this.log.info({ server }, 'reconnected to NATS');
      }
    }
  }

  /**
   * working() for leased messages past half of ack_wait; their leases restart once a flush
   * proves the server got them in time (leases.ts).
   */
  private keepLeases(): void {
    const batch = this.leases.due();
    if (batch.keys.length === 0) return;
    for (const msg of batch.keys) {
      try {
        msg.working();
      } catch {
        // closed: JetStream redelivers after ack_wait; the lease runs out here too
      }
    }
    const nc = this.nc;
    if (nc && !nc.isClosed()) nc.flush().then(() => this.leases.confirm(batch), () => undefined);
  }

  private lease(msg: JsMsg): void {
    this.leases.add(msg);
    this.gauges();
  }

  private unlease(msg: JsMsg): void {
    this.leases.delete(msg);
    this.gauges();
  }

  private gauges(): void {
    this.tele.gauges(this.leases.size, this.held.agents, this.held.count);
  }

  /**
   * Held agents keep as much as the input may hold: fetch nothing more until one moves. By
   * count, room is left for a fetch within the consumer's max_ack_pending (or half of it).
   */
  private heldFull(): boolean {
    const c = this.config;
    return this.held.bytes >= c.maxHeldBytes || this.held.count >= Math.max(1, c.maxAckPending - c.fetchBatch, Math.floor(c.maxAckPending / 2));
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
   * The pump: pulls messages (one fetch of up to `fetchBatch` at a time) into `queue`, leasing
   * each from the moment it arrives. It pulls again only while fewer than `fetchBatch` messages
   * wait and held agents are under their limits, so what the gateway holds stays bounded (back
   * pressure onto JetStream).
   */
  private async pump(): Promise<void> {
    let failures = 0;
    while (!this.stopping) {
      if (this.queue.full() || this.heldFull()) {
        await new Promise<void>((resolve) => (this.wakePump = resolve));
        continue;
      }
      try {
        // By count, planned on the size of recent chunks (fetch-queue.ts): what waits stays
        // within about maxQueuedBytes, plus the processor's slice and what held agents keep.
        const iter = await this.consumer!.fetch({ max_messages: this.queue.nextFetch(), expires: FETCH_EXPIRES_MS });
        this.fetches.add(iter);
        try {
          for await (const m of iter) {
            this.lease(m);
            if (m.info.redelivered) this.tele.redelivered();
            this.queue.push(m);
            this.wakeProcessor?.();
          }
        } finally {
          this.fetches.delete(iter);
          this.queue.fetchEnded();
        }
        failures = 0;
        this.fetchFailures = 0;
        if (!this.paused) this.lastError = undefined;
      } catch (err) {
        if (this.stopping) break;
        failures++;
        this.fetchFailures = failures;
        this.lastError = redactText(errorMessage(err));
        this.tele.error('fetch', { err: this.lastError, failures }, 'JetStream fetch failed; retrying', failures === 1 || failures % 30 === 0 ? 'warn' : 'debug');
        await this.sleep(Math.min(5000, 100 * 2 ** Math.min(failures, 6)));
        if (failures % 5 === 0) await this.reensure();
      }
    }
  }

  /** Waits until the pump queues something or a held agent is due. */
  private idle(): Promise<void> {
    const next = this.held.nextDueAt();
    return new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(timer);
        this.wakeProcessor = undefined;
        resolve();
      };
      const timer = next === undefined ? undefined : setTimeout(done, Math.max(0, next - Date.now()));
      this.wakeProcessor = done;
    });
  }

  /**
   * The processor: first the held agents whose chunk is due for another try (each alone), then
   * what the pump queued (up to fetchBatch), batch after batch.
   */
  private async loop(): Promise<void> {
    const pump = this.pump();
    while (!this.stopping) {
      const due = this.held.due();
      if (due.length > 0) {
        await this.process(due.map((d) => d.head));
        for (const { agent, head } of due) if (!this.leases.has(head)) this.releaseAgent(agent);
      } else if (this.queue.length > 0) {
        await this.process(this.queue.take());
      } else {
        await this.idle();
        continue;
      }
      this.wakePump?.();
      this.wakePump = undefined;
    }
    this.wakePump?.();
    await pump;
  }

  /** A held agent's chunk is done: the chunks behind it go first, before anything newer. */
  private releaseAgent(agent: string): void {
    const { rest, attempts, heldMs } = this.held.release(agent);
    this.queue.putBack(rest);
    this.tele.released(agent, attempts, heldMs, rest.length);
    this.gauges();
  }

  /** After repeated fetch errors: the stream or consumer may have been deleted; set them up again. */
  private async reensure(): Promise<void> {
    if (!this.nc || this.nc.isClosed() || !this.connected) return;
    try {
      await ensureJetStream(await jetstreamManager(this.nc), this.config, this.log);
      this.consumer = await this.js!.consumers.get(this.config.stream, this.config.consumer);
    } catch (err) {
      this.log.warn({ err: redactText(errorMessage(err)) }, 'could not check the JetStream stream and consumer');
    }
  }

  /** Admits the messages in order and sends them to the sink in slices within the decode budget. */
  private async process(msgs: JsMsg[]): Promise<void> {
    const { maxDecodedBytes, maxDecodedRecords } = this.config;
    let slice: Item[] = [];
    let bytes = 0;
    let records = 0;
    for (const msg of msgs) {
      if (this.pastStopDeadline()) return;
      const item = await this.admit(msg);
      if (!item) continue;
      const r = item.chunk.count;
      const b = item.chunk.dataBytes;
      if (slice.length > 0 && (bytes + b > maxDecodedBytes || records + r > maxDecodedRecords)) {
        await this.deliver(slice);
        slice = [];
        bytes = 0;
        records = 0;
        // Sending the slice may have held this chunk's agent, or outlived its lease.
        if (!this.stillOurs(item)) continue;
      }
      slice.push(item);
      bytes += b;
      records += r;
    }
    if (slice.length > 0) await this.deliver(slice);
  }

  /**
   * The checks before a message may go to the sink (see the top of this file). Returns it
   * decoded, or undefined when it was dealt with here (dropped, dead-lettered, held).
   */
  private async admit(msg: JsMsg): Promise<Item | undefined> {
    const c = this.config;
    if (this.leases.expired(msg)) {
      this.drop(msg);
      return undefined;
    }
    if (msg.info.deliveryCount > c.maxDeliveries) {
      await this.deadLetter(msg, 'max-deliveries', `JetStream delivered it ${msg.info.deliveryCount} times, more than nats.maxDeliveries (${c.maxDeliveries})`, fields(msg));
      return undefined;
    }
    const agent = subjectAgentId(c.subjectPrefix, msg.subject) ?? '';
    if (this.keptBehind(agent, msg)) return undefined;
    let chunk: DecodedChunk;
    try {
      chunk = decodeChunk(msg.data);
    } catch (err) {
      await this.deadLetter(msg, 'malformed', errorMessage(err), { ...fields(msg), bytes: msg.data.length });
      return undefined;
    }
    const problem = chunkIdentityProblem(c.subjectPrefix, msg.subject, msgId(msg), chunk.header, msg.data);
    if (problem !== undefined) {
      await this.deadLetter(msg, 'identity', `identity mismatch: ${problem}`, fields(msg, chunk));
      return undefined;
    }
    const topic = chunk.header.topic;
    const reserved = this.policy.reservedReason(topic);
    if (reserved !== null) {
      await this.deadLetter(msg, 'internal-topic', `topic "${topic}" is reserved (${reserved}): no chunk may write to it`, fields(msg, chunk));
      return undefined;
    }
    if (!this.policy.allows(topic)) {
      if (!this.counted.has(msg)) this.tele.refusedTopic();
      this.counted.add(msg);
      this.holdForSetting('forbidden-topic', { msg, chunk, agent }, `topic "${topic}" is not allowed for chunks arriving over NATS (nats.allowTopics: ${this.policy.describe()})`);
      return undefined;
    }
    if (!this.counted.has(msg)) this.tele.received(topic, chunk.count, chunk.dataBytes);
    this.counted.add(msg);
    return { msg, chunk, agent };
  }

  /** Keeps `msg` behind its held agent's chunks when the agent is held (and it is not the held chunk). */
  private keptBehind(agent: string, msg: JsMsg): boolean {
    if (!this.held.has(agent) || this.held.isHead(agent, msg)) return false;
    this.held.hold(agent, msg, '');
    this.gauges();
    return true;
  }

  /** False (and dealt with) when the item's lease ran out or its agent got held meanwhile. */
  private stillOurs(item: Item): boolean {
    if (this.leases.expired(item.msg)) {
      this.drop(item.msg, item.chunk);
      return false;
    }
    return !this.keptBehind(item.agent, item.msg);
  }

  /** A setting refuses the chunk: hold its agent (or, for the held chunk itself, wait longer). */
  private holdForSetting(reason: HoldReason, item: Item, err: string): void {
    if (this.held.isHead(item.agent, item.msg)) {
      this.tele.heldAgain(item.agent, this.held.again(item.agent, err), err);
      return;
    }
    const started = this.held.hold(item.agent, item.msg, err);
    this.tele.held(reason, fields(item.msg, item.chunk), err, started);
    this.gauges();
  }

  /** The lease ran out: JetStream redelivers the message; this gateway lets it go. */
  private drop(msg: JsMsg, chunk?: DecodedChunk): void {
    this.unlease(msg);
    this.tele.leaseExpired({ ...fields(msg, chunk), deliveryCount: msg.info.deliveryCount });
  }

  private async send(items: Item[]): Promise<SinkOutcome[]> {
    for (const i of items) this.inFlight.add(i.msg);
    try {
      return await this.sink.send(items.map((i) => ({ chunk: i.chunk, source: NATS_SOURCE })));
    } catch (err) {
      // The sink contract resolves outcomes; a throw is a bug, treated as retry.
      const error = err instanceof Error ? err : new Error(String(err));
      return items.map(() => ({ kind: 'retry', error }));
    } finally {
      for (const i of items) this.inFlight.delete(i.msg);
    }
  }

  /** Sends one slice until every chunk is acked, dead-lettered, held or dropped (or the stop deadline). */
  private async deliver(slice: Item[]): Promise<void> {
    let items = slice;
    let attempt = 0;
    while (items.length > 0 && !this.pastStopDeadline()) {
      items = items.filter((i) => this.stillOurs(i));
      if (items.length === 0) break;
      const outcomes = await this.send(items);
      const retry: Item[] = [];
      /** agents with a chunk in `retry`: their later chunks retry too, whatever they got */
      const retrying = new Set<string>();
      let retryAfter = 0;
      let firstError: Error | undefined;
      for (const [i, item] of items.entries()) {
        const o = outcomes[i] ?? { kind: 'retry', error: new Error('the sink returned no outcome for this chunk') };
        if (o.kind === 'ok') {
          this.ackMsg(item.msg);
          this.tele.acked(item.chunk.header.topic);
        } else if (o.kind === 'fatal' && o.fault === 'chunk') {
          await this.deadLetter(item.msg, 'refused', `Kafka refused the chunk: ${o.error.message}`, fields(item.msg, item.chunk));
        } else if (this.keptBehind(item.agent, item.msg)) {
          // an earlier chunk of its agent is held
        } else if (o.kind === 'fatal' && !retrying.has(item.agent)) {
          this.holdForSetting('kafka-setting', item, o.error.message);
        } else {
          retry.push(item);
          retrying.add(item.agent);
          if (o.kind === 'retry') retryAfter = Math.max(retryAfter, o.retryAfterMs ?? 0);
          firstError ??= o.error;
        }
      }
      items = retry;
      if (items.length === 0) break;
      attempt++;
      this.paused = true;
      // The sink's hint when it gives one (it knows how long Kafka has been failing), else ours.
      const wait = retryAfter > 0 ? Math.min(60_000, retryAfter) : Math.min(5000, 200 * 2 ** Math.min(attempt - 1, 5));
      this.lastError = firstError?.message;
      this.tele.retrying(items.length, attempt, wait, firstError?.message);
      await this.sleep(this.stopping ? Math.min(wait, Math.max(0, this.stopDeadline - Date.now() - 100)) : wait);
    }
    this.paused = false;
    // Stopping with chunks still refused for now: they stay leased, and stop() gives them back.
    if (attempt > 0 && items.length === 0) this.log.info({ attempts: attempt }, 'sink took the held chunks');
  }

  /** Stopping, and the deadline is near: take nothing more to the sink. */
  private pastStopDeadline(): boolean {
    return this.stopping && Date.now() >= this.stopDeadline - 100;
  }

  private ackMsg(msg: JsMsg): void {
    try {
      msg.ack();
    } catch (err) {
      this.tele.error('ack', { msgId: msgId(msg), err: errorMessage(err) }, 'ack failed; JetStream will redeliver the chunk');
    }
    this.unlease(msg);
  }

  private nakMsg(msg: JsMsg, delayMs: number): void {
    try {
      msg.nak(delayMs);
    } catch {
      // disconnected: redelivered after ack_wait anyway
    }
    this.unlease(msg);
  }

  /**
   * Republishes the message to the dead-letter subject with the reason, then terms it. When the
   * dead-letter publish fails, the message is nak()ed (it comes back later) instead.
   */
  private async deadLetter(msg: JsMsg, reason: DeadReason, error: string, logFields: Record<string, unknown>): Promise<void> {
    const h = natsHeaders();
    const id = msgId(msg);
    h.set('Ferry-Dead-Reason', reason);
    h.set('Ferry-Dead-Error', error.replace(/[\r\n]+/g, ' ').slice(0, 1000));
    h.set('Ferry-Dead-Subject', msg.subject);
    h.set('Ferry-Dead-Stream', this.config.stream);
    h.set('Ferry-Dead-Stream-Seq', String(msg.seq));
    if (id) h.set('Ferry-Dead-Msg-Id', id);
    try {
      // Deduplicated by the stream sequence: a spoofed Nats-Msg-Id must not shadow another dead letter.
      await this.js!.publish(this.config.deadLetterSubject, msg.data, { headers: h, msgID: `${this.config.stream}/${msg.seq}/dead` });
    } catch (e) {
      this.tele.error('dead-letter', { ...logFields, reason, err: redactText(errorMessage(e)), deadLetterSubject: this.config.deadLetterSubject }, 'dead-letter publish failed; the chunk goes back to JetStream', 'error');
      this.nakMsg(msg, 5000);
      return;
    }
    this.tele.deadLettered(reason, logFields, error);
    try {
      msg.term(`ferry: ${reason}`);
    } catch {
      // disconnected: it comes back, and is dead-lettered again (deduplicated by msgID)
    }
    this.unlease(msg);
  }

  /**
   * Stops fetching, lets the processor finish until shortly before the deadline, then (when it
   * has not finished) awaits the sink's abortInFlight() within the deadline, then gives back
   * (nak) everything still leased; chunks still in the sink's hands when abortInFlight() did not
   * resolve in time are left to ack_wait instead.
   */
  async stop(deadlineMs: number): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    const reserve = Math.min(1000, Math.max(0, Math.floor((deadlineMs - Date.now()) / 4)));
    this.stopDeadline = deadlineMs - reserve;
    for (const wake of [...this.sleepers]) wake();
    this.wakeProcessor?.();
    this.wakePump?.();
    // End pending pulls now instead of waiting for them to expire; what they delivered is leased
    // and nak()ed below.
    const pullsClosed = Promise.allSettled([...this.fetches].map((f) => f.close()));
    let keep = new Set<JsMsg>();
    if (this.loopDone && !(await settlesBy(this.loopDone, this.stopDeadline))) {
      this.log.warn({ leased: this.leases.size, inSink: this.inFlight.size }, 'JetStream input stop deadline reached; aborting what the sink has in flight, then giving chunks back');
      const aborted = this.sink.abortInFlight ? await settlesBy(this.sink.abortInFlight(), deadlineMs) : true;
      if (!aborted) {
        keep = new Set(this.inFlight);
        this.log.warn({ chunks: keep.size }, 'the sink did not abort its in-flight chunks by the deadline: leaving them to ack_wait instead of giving them back, so no other gateway commits them twice');
      }
    }
    await settlesBy(pullsClosed, deadlineMs);
    const back = this.leases.keys().filter((m) => !keep.has(m));
    for (const m of back) this.nakMsg(m, STOP_NAK_DELAY_MS);
    if (back.length > 0) this.log.info({ chunks: back.length }, 'gave unfinished chunks back to JetStream (nak)');
    if (this.workingTimer) clearInterval(this.workingTimer);
    this.hbSub?.unsubscribe();
    const nc = this.nc;
    if (nc && !nc.isClosed()) {
      // Push the last acks out before closing.
      await settlesBy(nc.flush(), Math.max(Date.now() + 100, Math.min(Date.now() + 2000, deadlineMs)));
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
    const held = this.heldDetail();
    if (held && this.heldFull()) return { ready: false, detail: `not fetching: held agents keep ${this.held.count} chunks (${this.held.bytes} bytes; nats.maxHeldBytes ${this.config.maxHeldBytes}); ${held}` };
    if (this.paused) return { ready: true, detail: `NATS connected; holding ${this.leases.size} chunks the sink refused for now (${this.lastError ?? 'retry'})${held ? `; ${held}` : ''}` };
    return { ready: true, detail: `NATS connected (${this.config.stream}/${this.config.consumer}, ${this.leases.size} in flight)${held ? `; ${held}` : ''}` };
  }

  /** The held agents for /readyz: how many, and the longest held with their reasons. */
  private heldDetail(): string | undefined {
    if (this.held.agents === 0) return undefined;
    const list = this.held.summary(3).map((h) => `${h.agent} (${h.chunks} chunks, ${Math.round(h.sinceMs / 1000)} s: ${h.reason})`);
    return `holding ${this.held.agents} agent(s) a setting refuses: ${list.join('; ')}${this.held.agents > 3 ? '; ...' : ''}`;
  }
}

/** True when `p` settled (resolved or rejected) by `deadlineMs`, false when the deadline came first. */
async function settlesBy(p: Promise<unknown>, deadlineMs: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => true,
      ),
      new Promise<boolean>((r) => (timer = setTimeout(() => r(false), Math.max(0, deadlineMs - Date.now())))),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
