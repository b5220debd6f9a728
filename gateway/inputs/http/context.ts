/**
 * What the HTTP input's plugins share: config, sink, agent registry, authentication, telemetry
 * and the drain state. Built once by buildHttpApp and passed to each plugin as its options.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';
import type { GatewayConfig } from '../../config.js';
import type { Sink, SinkChunk, SinkOutcome } from '../../sinks/sink.js';
import type { AgentRegistry } from '../../agents.js';
import type { ReservedTopics } from '../../topics.js';
import type { Credential, TokenAuth } from './auth.js';
import { HttpError } from './errors.js';
import type { HttpTelemetry } from './telemetry.js';

export type HttpConfig = NonNullable<GatewayConfig['http']>;

export interface DrainState {
  /** set by stop(): new chunks and produce requests are answered 503 */
  draining: boolean;
  /** chunk and produce requests whose handler is running (decode, sink send) */
  inflight: number;
  /** chunk and produce requests admitted and not yet answered (bodies being read included) */
  admitted: number;
  /** called whenever inflight drops to 0 */
  onIdle: (() => void) | null;
}

export interface HttpContext {
  config: HttpConfig;
  sink: Sink;
  agents: AgentRegistry;
  /** replaced as a whole when the tokens are reloaded (SIGHUP) */
  auth: TokenAuth;
  telemetry: HttpTelemetry;
  caller: SinkCaller;
  gatewayId: string;
  state: DrainState;
  /** topics no credential may write (gateway/topics.ts) */
  reserved: ReservedTopics;
}

declare module 'fastify' {
  interface FastifyRequest {
    /** set by the authentication hook of the routes that need a token */
    ferryCredential: Credential | null;
  }
}

/** onRequest hook: authenticates (401 before any body is read). */
export function authHook(ctx: HttpContext) {
  return (req: FastifyRequest, _reply: FastifyReply, done: (err?: Error) => void): void => {
    try {
      req.ferryCredential = ctx.auth.authenticate(req.headers.authorization);
      done();
    } catch (err) {
      done(err as Error);
    }
  };
}

/**
 * onRequest hook for data routes (after authHook): 503 while draining (with Retry-After and
 * Connection: close); 429 with Retry-After when http.maxConcurrentRequests are already
 * admitted, or http.maxConcurrentRequestsPerToken of this credential (back pressure: the sender
 * keeps the data and retries; memory stays bounded; one token, e.g. slow trickling bodies,
 * cannot hold every slot). Admitted requests are counted until their connection answers or
 * closes.
 */
export function admissionHook(ctx: HttpContext) {
  return (req: FastifyRequest, reply: FastifyReply, done: (err?: Error) => void): void => {
    const busy = (message: string): void => done(new HttpError(429, 'FERRY_BUSY', message, { retryAfterMs: ctx.config.retryAfterMs }));
    if (ctx.state.draining) {
      void reply.header('connection', 'close');
      done(new HttpError(503, 'FERRY_SHUTTING_DOWN', 'the gateway is shutting down; retry on another gateway or later', { retryAfterMs: ctx.config.retryAfterMs }));
      return;
    }
    const { maxConcurrentRequests: max, maxConcurrentRequestsPerToken: perToken } = ctx.config;
    if (ctx.state.admitted >= max) {
      busy(`the gateway is handling http.maxConcurrentRequests (${max}) requests; retry later`);
      return;
    }
    const cred = req.ferryCredential!;
    if (cred.active >= perToken) {
      busy(`credential "${cred.name}" already has http.maxConcurrentRequestsPerToken (${perToken}) requests in progress; retry later`);
      return;
    }
    ctx.state.admitted++;
    cred.active++;
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      ctx.state.admitted--;
      cred.active--;
    };
    reply.raw.once('finish', release);
    reply.raw.once('close', release);
    done();
  };
}

/** Runs a handler's work counted as in flight, so that stop() waits for it. */
export async function tracked<T>(ctx: HttpContext, work: () => Promise<T>): Promise<T> {
  ctx.state.inflight++;
  try {
    return await work();
  } finally {
    ctx.state.inflight--;
    if (ctx.state.inflight === 0) ctx.state.onIdle?.();
  }
}

/**
 * Sends through the sink. A chunk whose id is already in flight through this gateway (an agent
 * retrying after a client-side timeout) joins that send instead of producing again; its answer
 * then says duplicate. A sink that throws counts as a retry (it should not throw).
 */
export class SinkCaller {
  readonly #sink: Sink;
  readonly #inflight = new Map<string, Promise<SinkOutcome>>();

  constructor(sink: Sink) {
    this.#sink = sink;
  }

  async send(item: SinkChunk, id: string | null): Promise<SinkOutcome> {
    if (id !== null) {
      const running = this.#inflight.get(id);
      if (running) {
        const o = await running;
        return o.kind === 'ok' ? { kind: 'ok', duplicate: true } : o;
      }
    }
    const p = this.#sink.send([item]).then(
      (outcomes): SinkOutcome => outcomes[0] ?? { kind: 'retry', error: new Error('the sink returned no outcome for the chunk') },
      (err: unknown): SinkOutcome => ({ kind: 'retry', error: err instanceof Error ? err : new Error(String(err)) }),
    );
    if (id === null) return p;
    this.#inflight.set(id, p);
    try {
      return await p;
    } finally {
      this.#inflight.delete(id);
    }
  }
}

/** kafkajs error types (on the error or its causes) that mean the topic cannot be written. */
const TOPIC_TYPES = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'TOPIC_AUTHORIZATION_FAILED', 'INVALID_TOPIC_EXCEPTION']);
const SIZE_TYPES = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);

function causeTypes(err: unknown): { codes: Set<string>; types: Set<string> } {
  const codes = new Set<string>();
  const types = new Set<string>();
  let cur: unknown = err;
  for (let depth = 0; depth < 8 && cur !== null && typeof cur === 'object'; depth++) {
    const o = cur as { code?: unknown; type?: unknown; cause?: unknown; originalError?: unknown };
    if (typeof o.code === 'string') codes.add(o.code);
    if (typeof o.type === 'string') types.add(o.type);
    cur = o.cause ?? o.originalError;
  }
  return { codes, types };
}

/** The HTTP answer for a sink outcome that is not ok. */
export function outcomeToHttpError(outcome: Exclude<SinkOutcome, { kind: 'ok' }>, topic: string, retryAfterMs: number): HttpError {
  if (outcome.kind === 'retry') {
    return new HttpError(503, 'FERRY_KAFKA_UNAVAILABLE', `Kafka is unavailable, retry later: ${outcome.error.message}`, {
      retryAfterMs: outcome.retryAfterMs ?? retryAfterMs,
      cause: outcome.error,
    });
  }
  const { codes, types } = causeTypes(outcome.error);
  if (codes.has('FERRY_TOPIC_FORBIDDEN') || [...types].some((t) => TOPIC_TYPES.has(t))) {
    return new HttpError(403, 'FERRY_TOPIC_FORBIDDEN', `topic "${topic}" cannot be written: ${outcome.error.message}`, { cause: outcome.error });
  }
  if ([...types].some((t) => SIZE_TYPES.has(t))) {
    return new HttpError(413, 'FERRY_BODY_TOO_LARGE', `Kafka refused the records as too large: ${outcome.error.message}`, { cause: outcome.error });
  }
  return new HttpError(422, 'FERRY_RECORD_REFUSED', `Kafka refused the records: ${outcome.error.message}`, { cause: outcome.error });
}
