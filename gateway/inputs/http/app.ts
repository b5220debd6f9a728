/**
 * The HTTP input's fastify app, built without listening (tests use `inject()`; HttpInput
 * listens). One plugin per concern, each in its own encapsulated context with its own
 * content-type parsers and hooks:
 *   chunks.ts      POST /v1/chunks        agents' chunks (application/vnd.ferry.chunk)
 *   produce.ts     POST /topics/:topic    REST Proxy v2-shaped JSON produce
 *   heartbeats.ts  POST /v1/heartbeats, GET /v1/agents
 * Every refusal answers `{ "error": { "code": "FERRY_...", "message" } }` (errors.ts).
 */
import { readFileSync } from 'node:fs';
import { fastify, type FastifyInstance } from 'fastify';
import type { Logger } from '../../../shared/log.js';
import type { Registry } from '../../../shared/metrics.js';
import type { AgentRegistry } from '../../agents.js';
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
  const auth = new TokenAuth(opts.config.tokens);
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
  };
  const https = httpsOptions(opts.config);
  const app = fastify({
    logger: false,
    bodyLimit: opts.config.bodyLimitBytes,
    ...(https ? { https } : {}),
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

  if (!auth.enabled) log.warn('http.tokens is empty: the HTTP input accepts requests without authentication');
  return app;
}

/** The shared context of an app built by buildHttpApp (for HttpInput: token reload). */
export function httpContextOf(app: FastifyInstance): HttpContext {
  return (app as FastifyInstance & { ferryHttp: HttpContext }).ferryHttp;
}
