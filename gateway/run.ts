/**
 * The Gateway: assembles the Kafka sink, the inputs (JetStream, HTTP), the agent registry and
 * the monitor from one config, and runs them until a signal.
 *
 * Start order and what an operator sees:
 * 1. the monitor listens first, so /healthz answers and /readyz explains what is not ready yet;
 * 2. the Kafka sink starts. Kafka unreachable at start is retried with backoff (1 s doubling to
 *    30 s, each failure logged with its reason) for `startupTimeoutMs` (default 60 s; 0 = for
 *    ever); after that the gateway exits 1 naming the setting (kafka.brokers) and the last
 *    error, so a supervisor (systemd, Kubernetes) restarts it and the failure is visible rather
 *    than a gateway that looks up but never moves data;
 * 3. the JetStream input (when `nats` is set), with the same retry rule (nats.servers);
 * 4. the HTTP input (when `http` is set) listens. A listen failure (port in use, bad address,
 *    TLS files) is not retried: it is a configuration error and exits 1 at once.
 * Invalid config never gets this far: it is refused before anything starts, every problem
 * with its key.
 *
 * SIGHUP reloads the config file: HTTP tokens (and their topic allowlists) take effect at once;
 * any other change is logged as needing a restart; an invalid file is logged and ignored.
 *
 * Stop (SIGTERM/SIGINT, or `stop()`): the inputs stop taking work (HTTP answers 503 to new
 * chunks, JetStream stops fetching), finish their in-flight batches and ack them, then the sink
 * flushes and disconnects, then the monitor closes; all within `shutdownTimeoutMs`. Work not
 * finished by the deadline is not acked, so it comes back (JetStream redelivery, agent resend)
 * and the sink deduplicates it. A second signal during the drain exits at once (code 1).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { createLogger, type Logger } from '../shared/log.js';
import { createRegistry, type Registry } from '../shared/metrics.js';
import { ConfigError, FerryError, StreamUnsafeError, errorMessage } from '../shared/errors.js';
import { redactText, redactUrls } from '../shared/redact.js';
import { VERSION } from '../shared/version.js';
import { AgentRegistry } from './agents.js';
import { loadGatewayConfig, type GatewayConfig } from './config.js';
import { HttpInput } from './inputs/http/input.js';
import { JetStreamInput } from './inputs/jetstream/input.js';
import { Monitor, readiness, type HealthCheck } from './monitor.js';
import { createKafkaSink } from './sinks/kafka/sink.js';
import type { Sink } from './sinks/sink.js';
import type { Heartbeat } from '../shared/protocol.js';
import { reservedTopicsOf, type ReservedTopics } from './topics.js';

/** A gateway component as run.ts drives it. */
export interface Component {
  start(): Promise<unknown>;
  stop(deadlineMs: number): Promise<void>;
  health(): { ready: boolean; detail: string };
}

/** How the gateway makes its sink and JetStream input (tests inject fakes). */
export interface GatewayFactories {
  sink(config: GatewayConfig['kafka'], opts: { gatewayId: string; log: Logger; registry: Registry }): Sink;
  jetstream(opts: {
    config: NonNullable<GatewayConfig['nats']>;
    sink: Sink;
    log: Logger;
    registry: Registry;
    onHeartbeat: (hb: Heartbeat) => void;
    /** topics no input may write (kafka.committedTopic, `__*`, `_*`): gateway/topics.ts */
    reserved: ReservedTopics;
  }): Component;
}

export const defaultFactories: GatewayFactories = {
  sink: (config, opts) => createKafkaSink(config, opts),
  jetstream: (opts) => new JetStreamInput(opts),
};

/** The gateway could not start: which part, and why. */
/** `p`, or a rejection once `deadline` (ms since epoch, Infinity: none) has passed. */
function untilDeadline<T>(p: Promise<T>, deadline: number, what: string): Promise<T> {
  if (deadline === Infinity) return p;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no answer from ${what} in time`)), Math.max(0, deadline - Date.now()));
  });
  p.catch(() => undefined); // the attempt may still fail after the deadline: nobody waits for it
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

export class GatewayStartError extends FerryError {
  readonly part: string;
  constructor(part: string, message: string, options?: { cause?: unknown }) {
    super(part === 'kafka' ? 'FERRY_KAFKA' : 'FERRY_TRANSPORT', message, options);
    this.part = part;
  }
}

export interface GatewayOptions {
  log: Logger;
  registry: Registry;
  factories?: GatewayFactories;
  /** first retry delay at start; default 1000 ms (doubling to 30 s) */
  startRetryMs?: number;
}

type State = 'new' | 'starting' | 'running' | 'stopping' | 'stopped';

const MAX_START_RETRY_MS = 30_000;

export class Gateway {
  readonly config: Readonly<GatewayConfig>;
  readonly agents: AgentRegistry;
  readonly monitor: Monitor;
  #sink: Sink | null = null;
  #jetstream: Component | null = null;
  #http: HttpInput | null = null;
  #state: State = 'new';
  #starting = '';
  readonly #abort = new AbortController();
  readonly #log: Logger;
  readonly #rootLog: Logger;
  readonly #registry: Registry;
  readonly #factories: GatewayFactories;
  readonly #startRetryMs: number;
  #stopped: Promise<void> | null = null;
  #resolveDone!: () => void;
  /** resolves once the gateway has stopped (after stop(), or a failed start) */
  readonly done: Promise<void> = new Promise((resolve) => (this.#resolveDone = resolve));

  constructor(config: Readonly<GatewayConfig>, opts: GatewayOptions) {
    this.config = config;
    this.#rootLog = opts.log;
    this.#log = opts.log.child({ component: 'gateway' });
    this.#registry = opts.registry;
    this.#factories = opts.factories ?? defaultFactories;
    this.#startRetryMs = opts.startRetryMs ?? 1000;
    this.agents = new AgentRegistry({
      heartbeatIntervalMs: config.monitor.agentHeartbeatIntervalMs,
      forgetAfterMs: config.monitor.agentForgetAfterMs,
      maxAgents: config.monitor.maxAgents,
      log: opts.log,
      registry: opts.registry,
    });
    this.monitor = new Monitor({ listen: config.monitor.listen, registry: opts.registry, agents: this.agents, checks: () => this.checks(), log: opts.log });
  }

  get state(): State {
    return this.#state;
  }

  /** The HTTP input's bound address (`host:port`), once started. */
  get httpAddress(): string | undefined {
    return this.#http?.address;
  }

  /** What /readyz reports: one check per configured part. */
  checks(): HealthCheck[] {
    const pending = (name: string, what: string): HealthCheck => ({
      name,
      health: () => ({ ready: false, detail: this.#state === 'starting' ? `${what}: starting${this.#starting === name ? ' (connecting)' : ''}` : `${what}: ${this.#state}` }),
    });
    const out: HealthCheck[] = [this.#sink && this.#state !== 'starting' ? { name: 'kafka', health: () => this.#sink!.health() } : pending('kafka', 'Kafka sink')];
    if (this.config.nats) out.push(this.#jetstream && this.#state !== 'starting' ? { name: 'nats', health: () => this.#jetstream!.health() } : pending('nats', 'JetStream input'));
    if (this.config.http) out.push(this.#http && this.#state !== 'starting' ? { name: 'http', health: () => this.#http!.health() } : pending('http', 'HTTP input'));
    return out;
  }

  health(): { ready: boolean; detail: string } {
    const r = readiness(this.checks());
    return { ready: r.ready, detail: r.checks.map((c) => `${c.name}: ${c.detail}`).join('; ') };
  }

  /** Starts everything (see the top of this file); throws GatewayStartError when it cannot. */
  async start(): Promise<void> {
    if (this.#state !== 'new') throw new Error(`the gateway cannot start: it is ${this.#state}`);
    this.#state = 'starting';
    const c = this.config;
    this.#log.info({ id: c.id, version: VERSION, kafka: c.kafka.brokers, delivery: c.kafka.delivery, nats: c.nats && redactUrls(c.nats.servers), http: c.http?.listen }, 'gateway starting');
    try {
      try {
        await this.monitor.start();
      } catch (err) {
        throw new GatewayStartError('monitor', `cannot listen on monitor.listen ${c.monitor.listen}: ${errorMessage(err)}`, { cause: err });
      }
      const opts = { gatewayId: c.id, log: this.#rootLog, registry: this.#registry };
      this.#sink = await this.#startWithRetry('kafka', `Kafka at ${c.kafka.brokers.join(', ')} (kafka.brokers)`, () => {
        const sink = this.#factories.sink(c.kafka, opts);
        return { component: sink, start: () => sink.start() };
      });
      const sink = this.#sink;
      const reserved = reservedTopicsOf(c);
      if (c.nats) {
        const nats = c.nats;
        this.#jetstream = await this.#startWithRetry('nats', `NATS at ${redactUrls(nats.servers).join(', ')} (nats.servers)`, () => {
          const input = this.#factories.jetstream({
            config: nats,
            sink,
            log: this.#rootLog,
            registry: this.#registry,
            onHeartbeat: (hb) => this.agents.record(hb, 'nats'),
            reserved,
          });
          return { component: input, start: () => input.start() };
        });
      }
      if (c.http) {
        const http = new HttpInput({ config: c.http, sink, agents: this.agents, log: this.#rootLog, registry: this.#registry, gatewayId: c.id, reserved });
        try {
          await http.start();
        } catch (err) {
          throw new GatewayStartError('http', `cannot listen on http.listen ${c.http.listen}: ${errorMessage(err)}`, { cause: err });
        }
        this.#http = http;
        if (this.#abort.signal.aborted) await http.stop(Date.now() + 1000);
      }
    } catch (err) {
      if (!this.#abort.signal.aborted) this.#log.error({ err: redactText(errorMessage(err)) }, 'gateway cannot start');
      await this.stop(Date.now() + Math.min(5000, c.shutdownTimeoutMs));
      throw err;
    }
    if (this.#state !== 'starting') return; // stop() was called during the start
    this.#state = 'running';
    this.#log.info({ monitor: this.monitor.address, http: this.#http?.address }, 'gateway running');
  }

  async #startWithRetry<T extends { stop(deadlineMs: number): Promise<void> }>(
    name: string,
    what: string,
    make: () => { component: T; start: () => Promise<unknown> },
  ): Promise<T> {
    const timeoutMs = this.config.startupTimeoutMs;
    const giveUpAt = timeoutMs === 0 ? Infinity : Date.now() + timeoutMs;
    let delay = this.#startRetryMs;
    this.#starting = name;
    for (let attempt = 1; ; attempt++) {
      if (this.#abort.signal.aborted) throw new GatewayStartError(name, `stopped while connecting to ${what}`);
      const { component, start } = make();
      try {
        // A client may wait for Kafka longer than we may (librdkafka waits out its request
        // timeout): the attempt ends when the start-up time is up, whatever the client does.
        await untilDeadline(start(), giveUpAt, what);
        this.#starting = '';
        if (this.#abort.signal.aborted) {
          await component.stop(Date.now() + 5000).catch(() => undefined);
          throw new GatewayStartError(name, `stopped while connecting to ${what}`);
        }
        if (attempt > 1) this.#log.info({ part: name, attempts: attempt }, `connected to ${what}`);
        return component;
      } catch (err) {
        if (err instanceof GatewayStartError) throw err;
        await component.stop(Date.now() + 1000).catch(() => undefined);
        // Reached, but refused for a reason waiting does not fix: say so at once.
        if (err instanceof StreamUnsafeError || err instanceof ConfigError) throw new GatewayStartError(name, redactText(err.message), { cause: err });
        const left = giveUpAt - Date.now();
        if (left <= 0) {
          throw new GatewayStartError(name, `cannot reach ${what} after ${timeoutMs / 1000} s (startupTimeoutMs): ${redactText(errorMessage(err))}`, { cause: err });
        }
        const wait = Math.min(delay, left);
        this.#log.warn({ part: name, attempt, retryInMs: wait, err: redactText(errorMessage(err)) }, `cannot reach ${what}; retrying`);
        await sleep(wait, undefined, { signal: this.#abort.signal }).catch(() => undefined);
        delay = Math.min(delay * 2, MAX_START_RETRY_MS);
      }
    }
  }

  /**
   * Applies what can change while running (SIGHUP): today the HTTP tokens and their topic
   * allowlists. Returns the dotted keys applied and those that changed but need a restart
   * (connections, listeners, the sink's delivery settings are fixed at start).
   */
  reload(next: Readonly<GatewayConfig>): { applied: string[]; needsRestart: string[] } {
    const applied: string[] = [];
    const needsRestart: string[] = [];
    const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
    const cur = this.config;
    for (const key of Object.keys({ ...cur, ...next }) as Array<keyof GatewayConfig>) {
      if (key === 'http') continue;
      if (!same(cur[key], next[key])) needsRestart.push(key);
    }
    const { tokens: curTokens, ...curHttp } = cur.http ?? { tokens: [] };
    const { tokens: nextTokens, ...nextHttp } = next.http ?? { tokens: [] };
    if ((cur.http === undefined) !== (next.http === undefined) || !same(curHttp, nextHttp)) needsRestart.push('http');
    if (!same(curTokens, nextTokens)) {
      if (this.#http && next.http) {
        this.#http.setTokens(next.http.tokens);
        applied.push('http.tokens');
      } else {
        needsRestart.push('http.tokens');
      }
    }
    if (needsRestart.length > 0) this.#log.warn({ keys: needsRestart }, 'config reload: these settings changed but only take effect after a restart');
    this.#log.info({ applied }, 'config reloaded');
    return { applied, needsRestart };
  }

  /**
   * Drains and stops within `shutdownTimeoutMs` (or the deadline given). Safe to call more than
   * once, and during start (the start then fails with "stopped while connecting").
   */
  stop(deadlineMs: number = Date.now() + this.config.shutdownTimeoutMs): Promise<void> {
    this.#stopped ??= this.#shutdown(deadlineMs);
    return this.#stopped;
  }

  async #shutdown(deadlineMs: number): Promise<void> {
    if (this.#state === 'stopped') return;
    if (this.#state === 'new') {
      this.#state = 'stopped';
      this.#resolveDone();
      return;
    }
    this.#state = 'stopping';
    this.#abort.abort();
    const started = Date.now();
    this.#log.info({ deadlineInMs: deadlineMs - started }, 'gateway stopping: draining inputs');
    // Inputs first (stop taking work, finish and ack what is in flight); leave the sink a
    // share of the time to flush what the inputs handed it.
    const inputsDeadline = deadlineMs - Math.min(2000, Math.floor((deadlineMs - started) / 4));
    const results = await Promise.allSettled([this.#http?.stop(inputsDeadline), this.#jetstream?.stop(inputsDeadline)]);
    for (const r of results) if (r.status === 'rejected') this.#log.warn({ err: errorMessage(r.reason) }, 'an input failed to stop cleanly');
    if (this.#sink) await this.#sink.stop(deadlineMs).catch((err: unknown) => this.#log.warn({ err: errorMessage(err) }, 'the Kafka sink failed to stop cleanly'));
    await this.monitor.stop().catch(() => undefined);
    this.#state = 'stopped';
    this.#log.info({ tookMs: Date.now() - started }, 'gateway stopped');
    this.#resolveDone();
  }
}

export interface RunOptions {
  env?: NodeJS.ProcessEnv;
  /** default: a pino logger to stdout at the config's log level */
  log?: Logger;
}

/**
 * `ferry-gateway run --config <file>`: loads the config (throws ConfigError / ConfigReadError
 * naming every problem), runs the gateway until SIGTERM/SIGINT, returns the exit code.
 */
export async function runGateway(file: string, opts: RunOptions = {}): Promise<number> {
  const config = loadGatewayConfig(file, opts.env ?? process.env);
  const log = opts.log ?? createLogger({ name: 'ferry-gateway', level: config.log.level, base: { gateway: config.id } });
  const registry = createRegistry({ labels: { gateway: config.id } });
  const gateway = new Gateway(config, { log, registry });

  let signals = 0;
  const onSignal = (signal: NodeJS.Signals): void => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, 'second signal during shutdown: exiting now');
      log.flush();
      process.exit(1);
    }
    log.info({ signal }, 'signal received: shutting down');
    // Backstop: a part that ignores its deadline must not keep the process past it.
    setTimeout(() => {
      log.error({ shutdownTimeoutMs: config.shutdownTimeoutMs }, 'shutdown did not finish within shutdownTimeoutMs: exiting anyway; unacknowledged work will be redelivered');
      log.flush();
      process.exit(1);
    }, config.shutdownTimeoutMs + 1000).unref();
    void gateway.stop();
  };
  const onHup = (): void => {
    try {
      gateway.reload(loadGatewayConfig(file, opts.env ?? process.env));
    } catch (err) {
      log.error({ err: errorMessage(err) }, 'SIGHUP: the config file is not valid; keeping the running config');
    }
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  process.on('SIGHUP', onHup);
  try {
    try {
      await gateway.start();
    } catch (err) {
      if (signals > 0) {
        await gateway.stop();
        return 0;
      }
      log.fatal({ err: redactText(errorMessage(err)) }, 'gateway failed to start');
      throw err;
    }
    await gateway.done;
    return 0;
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    process.off('SIGHUP', onHup);
    log.flush();
  }
}
