/**
 * The gateway's monitor: a small separate HTTP server on `monitor.listen` (default
 * 127.0.0.1:9465), without authentication (keep it on an internal interface: /v1/agents lists
 * every agent's host and state):
 *   GET /healthz    200 while the process runs and its event loop answers
 *   GET /readyz     200 when every check is ready (Kafka sink; NATS input when configured;
 *                   HTTP input when configured), else 503; the body lists each check
 *   GET /metrics    Prometheus text of the process registry
 *   GET /v1/agents  the agent registry (same as on the HTTP input)
 */
import { fastify, type FastifyInstance } from 'fastify';
import { parseListen } from '../shared/config/index.js';
import type { Logger } from '../shared/log.js';
import type { Registry } from '../shared/metrics.js';
import { HTTP_AGENTS_PATH } from '../shared/protocol.js';
import type { AgentRegistry } from './agents.js';

export interface HealthCheck {
  name: string;
  health(): { ready: boolean; detail: string };
}

export interface MonitorOptions {
  listen: string;
  registry: Registry;
  agents: AgentRegistry;
  /** read at every /readyz; may change over the process's life (components start late) */
  checks: () => readonly HealthCheck[];
  log: Logger;
}

export interface ReadyBody {
  ready: boolean;
  checks: Array<{ name: string; ready: boolean; detail: string }>;
}

export function readiness(checks: readonly HealthCheck[]): ReadyBody {
  const out = checks.map((c) => {
    try {
      return { name: c.name, ...c.health() };
    } catch (err) {
      return { name: c.name, ready: false, detail: `health check failed: ${err instanceof Error ? err.message : String(err)}` };
    }
  });
  return { ready: out.length > 0 && out.every((c) => c.ready), checks: out };
}

export function buildMonitorApp(opts: Omit<MonitorOptions, 'listen'>): FastifyInstance {
  const app = fastify({ logger: false }) as unknown as FastifyInstance;
  app.get('/healthz', (_req, reply) => reply.send({ status: 'ok' }));
  app.get('/readyz', (_req, reply) => {
    const body = readiness(opts.checks());
    return reply.code(body.ready ? 200 : 503).send(body);
  });
  app.get('/metrics', async (_req, reply) => {
    const text = await opts.registry.metrics();
    return reply.header('content-type', opts.registry.contentType).send(text);
  });
  app.get(HTTP_AGENTS_PATH, (_req, reply) => reply.send(opts.agents.list()));
  app.setNotFoundHandler((req, reply) =>
    reply.code(404).send({ error: { code: 'FERRY_NOT_FOUND', message: `no route ${req.method} ${req.url.split('?')[0]} (try /healthz, /readyz, /metrics, /v1/agents)` } }),
  );
  return app;
}

export class Monitor {
  readonly app: FastifyInstance;
  readonly #listen: string;
  readonly #log: Logger;
  #address = '';

  constructor(opts: MonitorOptions) {
    this.#listen = opts.listen;
    this.#log = opts.log.child({ component: 'monitor' });
    this.app = buildMonitorApp(opts);
  }

  async start(): Promise<string> {
    const { host, port } = parseListen(this.#listen);
    await this.app.listen({ host, port });
    const addr = this.app.server.address();
    const boundPort = addr !== null && typeof addr === 'object' ? addr.port : port;
    this.#address = `${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
    this.#log.info({ listen: this.#address }, 'monitor listening: /healthz /readyz /metrics /v1/agents');
    return this.#address;
  }

  get address(): string {
    return this.#address;
  }

  async stop(): Promise<void> {
    await this.app.close();
  }
}
