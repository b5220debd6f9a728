/**
 * The HTTP input's fastify app, built without listening (tests use `inject()`; HttpInput
 * listens). One plugin per concern, each in its own encapsulated context with its own
 * content-type parsers and hooks:
 *   chunks.ts      POST /v1/chunks        agents' chunks (application/vnd.ferry.chunk)
 *   produce.ts     POST /topics/:topic    REST Proxy v2-shaped JSON produce
 *   heartbeats.ts  POST /v1/heartbeats, GET /v1/agents
 * Every refusal answers `{ "error": { "code": "FERRY_...", "message" } }` (errors.ts).
 *
 * Slow senders cannot hold connections for ever: a request's headers must arrive within
 * http.headersTimeoutMs and the whole request within http.requestTimeoutMs (node answers 408
 * and closes), a connection idle for http.idleTimeoutMs is closed, and so is an idle keep-alive
 * one after http.keepAliveTimeoutMs. Node checks the first two every CHECK_INTERVAL_MS at most.
 */
import { readFileSync } from 'node:fs';
import { fastify, type FastifyInstance } from 'fastify';
import type { Logger } from '../../../shared/log.js';
import type { Registry } from '../../../shared/metrics.js';
import type { AgentRegistry } from '../../agents.js';
import { DEFAULT_RESERVED, type ReservedTopics } from '../../topics.js';
import type { Sink } from '../../sinks/sink.js';
import { TokenAuth } from './auth.js';
import { chunksPlugin } from './chunks.js';
import { SinkCaller, type DrainState, type HttpConfig, type HttpContext } from './context.js';
import { HttpError, errorBody, retryAfterSeconds, toHttpError } from './errors.js';
import { heartbeatsPlugin } from './heartbeats.js';
import { PRODUCE_PARTITION_PATH, PRODUCE_PATH, producePlugin } from './produce.js';
import { HttpTelemetry } from './telemetry.js';

export interface HttpAppOptions {
  config: HttpConfig;
  sink: Sink;
  agents: AgentRegistry;
  log: Logger;
  registry: Registry;
  /** names the synthetic sender of produce requests (`rest.<gatewayId>`); default "gateway" */
  gatewayId?: string;
  /** shared with HttpInput so stop() can drain; a fresh one by default */
  state?: DrainState;
  /** topics no sender may write (from the gateway config); the defaults otherwise */
  reserved?: ReservedTopics;
}

/** How often node checks requests against headersTimeout/requestTimeout, at most. */
const CHECK_INTERVAL_MS = 1000;

/** Node's server timeouts from the http config (plain and TLS servers take the same options). */
function serverTimeouts(config: HttpConfig): { requestTimeout: number; headersTimeout: number; connectionsCheckingInterval: number } {
  const requestTimeout = config.requestTimeoutMs;
  const headersTimeout = Math.min(config.headersTimeoutMs, requestTimeout);
  return { requestTimeout, headersTimeout, connectionsCheckingInterval: Math.max(25, Math.min(CHECK_INTERVAL_MS, Math.floor(headersTimeout / 4))) };
}

export function newDrainState(): DrainState {
  return { draining: false, inflight: 0, admitted: 0, onIdle: null };
}

function httpsOptions(config: HttpConfig): { key: Buffer; cert: Buffer; ca?: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean } | null {
  const tls = config.tls;
  if (!tls) return null;
  if (!tls.certFile || !tls.keyFile) throw new HttpError(500, 'FERRY_INTERNAL', 'http.tls needs certFile and keyFile');
  const out: { key: Buffer; cert: Buffer; ca?: Buffer; requestCert?: boolean; rejectUnauthorized?: boolean } = {
    key: readFileSync(tls.keyFile),
    cert: readFileSync(tls.certFile),
  };
  // caFile on the server side means mTLS: clients must present a certificate signed by it.
  if (tls.caFile) Object.assign(out, { ca: readFileSync(tls.caFile), requestCert: true, rejectUnauthorized: true });
  return out;
}

export function buildHttpApp(opts: HttpAppOptions): FastifyInstance {
  const log = opts.log.child({ component: 'http-input' });
  const reserved = opts.reserved ?? DEFAULT_RESERVED;
  const auth = new TokenAuth(opts.config.tokens, reserved);
  const telemetry = new HttpTelemetry(log, opts.registry);
  const ctx: HttpContext = {
    config: opts.config,
    sink: opts.sink,
    agents: opts.agents,
    auth,
    telemetry,
    caller: new SinkCaller(opts.sink),
    gatewayId: opts.gatewayId ?? 'gateway',
    state: opts.state ?? newDrainState(),
    reserved,
  };
  const https = httpsOptions(opts.config);
  const timeouts = serverTimeouts(opts.config);
  const app = fastify({
    logger: false,
    bodyLimit: opts.config.bodyLimitBytes,
    requestTimeout: timeouts.requestTimeout,
    connectionTimeout: opts.config.idleTimeoutMs,
    keepAliveTimeout: opts.config.keepAliveTimeoutMs,
    ...(https ? { https: { ...https, ...timeouts } } : { http: timeouts }),
  }) as unknown as FastifyInstance;

  app.decorateRequest('ferryCredential', null);
  app.decorate('ferryHttp', ctx);

  app.setErrorHandler((err, req, reply) => {
    const e = toHttpError(err, opts.config.bodyLimitBytes);
    if (e.code === 'FERRY_INTERNAL') log.error({ err, method: req.method, url: req.url }, 'request failed');
    if (e.retryAfterMs !== undefined) void reply.header('retry-after', retryAfterSeconds(e.retryAfterMs));
    const body: Record<string, unknown> = { ...errorBody(e.code, e.message) };
    if (req.routeOptions.url === PRODUCE_PATH || req.routeOptions.url === PRODUCE_PARTITION_PATH) {
      // The REST proxy's error shape, next to Ferry's.
      body.error_code = e.statusCode * 100;
      body.message = e.message;
    }
    return reply.code(e.statusCode).send(body);
  });
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send(errorBody('FERRY_NOT_FOUND', `no route ${req.method} ${req.url.split('?')[0]}`)),
  );
  app.addHook('onResponse', (req, reply, done) => {
    telemetry.response(req.routeOptions.url ?? 'unknown', reply.statusCode, reply.elapsedTime / 1000);
    done();
  });

  void app.register(chunksPlugin, ctx);
  void app.register(producePlugin, ctx);
  void app.register(heartbeatsPlugin, ctx);

  if (!auth.enabled) log.warn('http.allowAnonymous is true: the HTTP input accepts requests without authentication, for every topic and agent id');
  return app;
}

/** The shared context of an app built by buildHttpApp (for HttpInput: token reload). */
export function httpContextOf(app: FastifyInstance): HttpContext {
  return (app as FastifyInstance & { ferryHttp: HttpContext }).ferryHttp;
}
