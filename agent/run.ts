/**
 * The Agent: spool + tailer + shipper + pump + heartbeats + monitor, and `ferry-agent run`.
 *
 * Start order (each step fails fast with a message naming the key): data dir writable and not
 * used by another agent (its OS lock, ./spool/lock.ts: FERRY_SPOOL_LOCKED) -> monitor (port
 * free) -> spool -> shipper (credentials, TLS files) -> pump -> tailer -> heartbeats. Stop order
 * (SIGTERM/SIGINT, within shutdownTimeoutMs): the tailer stops reading and spools what it has
 * cut -> the pump stops handing out chunks and waits for the publishes under way -> the shipper
 * closes -> the spool records the final state and closes -> the monitor closes -> the data dir's
 * lock is released. Whatever was not confirmed stays in the spool and is sent again at the next
 * start (receivers deduplicate by agentId/seq).
 * SIGHUP reloads the config file's inputs; an invalid file is logged and the old config kept.
 */
import { accessSync, closeSync, constants, mkdirSync, openSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { createLogger, type Logger } from '../shared/log.js';
import { createRegistry, Gauge, type Registry, Counter } from '../shared/metrics.js';
import { ConfigError, errorMessage } from '../shared/errors.js';
import { PROTOCOL_VERSION, type Heartbeat } from '../shared/protocol.js';
import { VERSION } from '../shared/version.js';
import { requireConfigPath, type ParsedCommand } from '../shared/cli.js';
import { loadAgentConfig, type AgentConfig } from './config.js';
import { Spool, META_SALVAGE } from './spool/spool.js';
import { Tailer } from './sources/tail/tailer.js';
import { Pump } from './shippers/pump.js';
import { createShipper, maxInFlightOf } from './shippers/index.js';
import type { Shipper } from './shippers/types.js';
import { startMonitor, type Monitor } from './monitor.js';
import { META_MAX_CHUNK_BYTES, learnedLimitMeta, startingMaxChunkBytes } from './limits.js';
import { lockDataDir, type DataDirLock } from './spool/lock.js';
import { META_AGENT_STATUS, parseSalvage, transportKind, type AgentMeta, type StatusReport } from './status.js';

export interface AgentOptions {
  config: Readonly<AgentConfig>;
  log: Logger;
  registry: Registry;
  /** the config file, for reload() without an argument */
  configFile?: string;
}

/** Creates the data dir if needed and checks it is writable; names the key when it is not. */
function prepareDataDir(dataDir: string): void {
  try {
    mkdirSync(dataDir, { recursive: true, mode: 0o700 });
    accessSync(dataDir, constants.W_OK | constants.X_OK);
    const probe = join(dataDir, `.write-test-${process.pid}`);
    closeSync(openSync(probe, 'w', 0o600));
    rmSync(probe, { force: true });
  } catch (err) {
    throw new ConfigError([{ path: 'dataDir', message: `${dataDir} is not a writable directory: ${errorMessage(err)}` }], undefined, { cause: err });
  }
}

export class Agent {
  private config: Readonly<AgentConfig>;
  private readonly log: Logger;
  private readonly registry: Registry;
  private readonly configFile: string | undefined;
  private readonly startedAtMs = Date.now();
  private spool: Spool | undefined;
  private shipper: Shipper | undefined;
  private pump: Pump | undefined;
  private tailer: Tailer | undefined;
  private monitor: Monitor | undefined;
  private lock: DataDirLock | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private heartbeatFailing = false;
  /** the largest encoded chunk the transport takes, as last learned (agent/limits.ts) */
  private transportMaxChunkBytes = 0;
  private stopping: Promise<void> | undefined;
  private readonly m: { heartbeats: Counter; heartbeatFailures: Counter; up: Gauge; reloads: Counter<'result'> };

  private constructor(opts: AgentOptions) {
    this.config = opts.config;
    this.log = opts.log.child({ component: 'agent' });
    this.registry = opts.registry;
    this.configFile = opts.configFile;
    const registers = [opts.registry];
    this.m = {
      heartbeats: new Counter({ name: 'ferry_agent_heartbeats_sent_total', help: 'heartbeats sent to the gateway side', registers }),
      heartbeatFailures: new Counter({ name: 'ferry_agent_heartbeat_failures_total', help: 'heartbeats that could not be sent', registers }),
      up: new Gauge({ name: 'ferry_agent_start_timestamp_seconds', help: 'when this agent process started (unix seconds)', registers }),
      reloads: new Counter({ name: 'ferry_agent_config_reloads_total', help: 'SIGHUP reloads, by result', labelNames: ['result'], registers }),
    };
    this.m.up.set(this.startedAtMs / 1000);
  }

  /** Starts everything; on failure, undoes what was started and throws (the message names the key). */
  static async start(opts: AgentOptions): Promise<Agent> {
    const agent = new Agent(opts);
    try {
      await agent.startParts(opts);
    } catch (err) {
      await agent.stop().catch(() => undefined);
      throw err;
    }
    return agent;
  }

  private async startParts(opts: AgentOptions): Promise<void> {
    const c = this.config;
    prepareDataDir(c.dataDir);
    this.lock = lockDataDir(c.dataDir);
    // Listen first: a taken port fails the start before anything was read or sent.
    if (c.monitor.enabled) this.monitor = await startMonitor({ listen: c.monitor.listen, source: this, registry: this.registry, log: opts.log });
    const deps = { log: opts.log, registry: this.registry };
    this.spool = Spool.open({ dataDir: c.dataDir, maxBytes: c.spool.maxBytes, minFreeBytes: c.spool.minFreeBytes, onFull: c.spool.onFull, synchronous: c.spool.synchronous, ...deps });
    this.transportMaxChunkBytes = startingMaxChunkBytes(c, this.spool.meta(META_MAX_CHUNK_BYTES));
    this.shipper = createShipper(c, { ...deps, onMaxChunkBytes: (n) => this.learnedLimit(n) });
    await this.shipper.start();
    this.pump = new Pump({ spool: this.spool, shipper: this.shipper, maxInFlight: maxInFlightOf(c), retry: c.retry, ...deps });
    const previous = this.readMeta();
    if (previous) this.pump.setLastShipAtMs(previous.lastShipAtMs);
    this.pump.start();
    this.tailer = new Tailer({ config: c, spool: this.spool, transportMaxChunkBytes: this.transportMaxChunkBytes, ...deps });
    await this.tailer.start();
    this.heartbeatTimer = setInterval(() => this.tick(), c.heartbeatIntervalMs);
    this.tick();
    this.log.info(
      { agentId: c.id, version: VERSION, transport: transportKind(c), dataDir: c.dataDir, inputs: c.inputs.length, monitor: this.monitorAddress() },
      'ferry-agent started',
    );
  }

  /** The transport announced its limit: kept in the spool (chunks are cut while disconnected too) and applied by the tailer. */
  private learnedLimit(maxChunkBytes: number): void {
    if (maxChunkBytes === this.transportMaxChunkBytes) return;
    this.log.info({ maxChunkBytes, was: this.transportMaxChunkBytes }, 'the transport takes chunks of at most this size: cutting to fit');
    this.transportMaxChunkBytes = maxChunkBytes;
    try {
      this.spool?.setMeta(META_MAX_CHUNK_BYTES, learnedLimitMeta(transportKind(this.config), maxChunkBytes));
    } catch (err) {
      this.log.warn({ err }, 'cannot record the transport limit in the spool');
    }
    this.tailer?.setTransportLimit(maxChunkBytes);
  }

  private monitorAddress(): string | null {
    return this.monitor ? `${this.monitor.host}:${this.monitor.port}` : null;
  }

  private readMeta(): AgentMeta | null {
    try {
      const text = this.spool?.meta(META_AGENT_STATUS);
      return text ? (JSON.parse(text) as AgentMeta) : null;
    } catch {
      return null;
    }
  }

  /** Every heartbeatIntervalMs: a heartbeat to the gateway side and the state recorded for `status`. */
  private tick(): void {
    this.writeMeta(true);
    const shipper = this.shipper;
    if (!shipper) return;
    shipper.heartbeat(this.heartbeat()).then(
      () => {
        this.m.heartbeats.inc();
        if (this.heartbeatFailing) this.log.info('heartbeats go through again');
        this.heartbeatFailing = false;
      },
      (err: unknown) => {
        this.m.heartbeatFailures.inc();
        if (!this.heartbeatFailing) this.log.warn({ err }, 'heartbeat not sent (logged once until one goes through)');
        this.heartbeatFailing = true;
      },
    );
  }

  heartbeat(): Heartbeat {
    const st = this.spool!.stats();
    const now = Date.now();
    return {
      v: PROTOCOL_VERSION,
      agentId: this.config.id,
      host: hostname(),
      version: VERSION,
      sentAtMs: now,
      startedAtMs: this.startedAtMs,
      spool: { chunks: st.chunks, bytes: st.bytes, oldestUnshippedAgeMs: st.oldestReadAtMs === null ? null : Math.max(0, now - st.oldestReadAtMs), full: st.full },
      lastShipAtMs: this.pump?.status().lastShipAtMs ?? null,
      transport: transportKind(this.config),
      inputs: this.config.inputs.length,
      files: this.tailer?.health().files ?? 0,
    };
  }

  private writeMeta(running: boolean): void {
    if (!this.spool || !this.shipper) return;
    const h = this.shipper.health();
    const meta: AgentMeta = {
      pid: process.pid,
      running,
      startedAtMs: this.startedAtMs,
      updatedAtMs: Date.now(),
      lastShipAtMs: this.pump?.status().lastShipAtMs ?? null,
      transport: { kind: h.transport, state: h.state, detail: h.detail, sinceMs: h.sinceMs },
      monitor: this.monitorAddress(),
    };
    try {
      this.spool.setMeta(META_AGENT_STATUS, JSON.stringify(meta));
    } catch (err) {
      this.log.warn({ err }, 'cannot record the agent state in the spool');
    }
  }

  /** /readyz: the spool is open, the transport connected, and shipping not blocked behind a refused chunk. */
  ready(): { ok: boolean; detail: string } {
    if (this.stopping) return { ok: false, detail: 'stopping' };
    if (!this.spool || !this.shipper || !this.pump) return { ok: false, detail: 'starting' };
    const h = this.shipper.health();
    const blocked = this.pump.status().blocked;
    const detail = `spool open; transport ${h.transport} ${h.state}: ${h.detail}${blocked ? `; shipping BLOCKED behind chunk ${blocked.seq}: ${blocked.error}` : ''}`;
    return { ok: h.ok && blocked === null, detail };
  }

  /** What `ferry-agent status --json` prints, live. */
  status(): StatusReport {
    const now = Date.now();
    const c = this.config;
    const st = this.spool?.stats();
    const disk = this.spool?.disk();
    const h = this.shipper?.health();
    const p = this.pump?.status();
    const t = this.tailer?.health();
    const report: StatusReport = {
      agentId: c.id,
      version: VERSION,
      running: true,
      source: 'agent',
      pid: process.pid,
      startedAtMs: this.startedAtMs,
      dataDir: c.dataDir,
      transport: h ? { kind: h.transport, state: h.state, detail: h.detail, sinceMs: h.sinceMs } : { kind: transportKind(c), state: 'starting', detail: 'starting', sinceMs: null },
      spool: {
        chunks: st?.chunks ?? 0,
        bytes: st?.bytes ?? 0,
        maxBytes: c.spool.maxBytes,
        oldestUnshippedAgeMs: st?.oldestReadAtMs == null ? null : Math.max(0, now - st.oldestReadAtMs),
        full: st?.full ?? false,
        fullReason: disk?.fullReason ?? null,
        diskBytes: disk?.diskBytes ?? 0,
        freeBytes: disk?.freeBytes ?? null,
        minFreeBytes: c.spool.minFreeBytes,
        droppedChunks: st?.droppedChunks ?? 0,
        minSeq: st?.minSeq ?? null,
        maxSeq: st?.maxSeq ?? null,
        salvage: parseSalvage(this.spool?.meta(META_SALVAGE)),
      },
      lastShipAtMs: p?.lastShipAtMs ?? null,
      shipping: p ? { inFlight: p.inFlight, retrying: p.retrying, blocked: p.blocked } : null,
      tailer: t ? { ok: t.ok, detail: t.detail, paused: t.paused, files: t.files } : null,
      files: (this.tailer?.fileStatus() ?? []).map((f) => ({ path: f.path, topic: f.topic, offset: f.offset, size: f.size, lagBytes: f.lagBytes })),
      generatedAtMs: now,
      notes: this.stopping ? ['stopping'] : [],
    };
    return report;
  }

  /** SIGHUP: re-reads the config file and applies its inputs; on any error keeps the current config. */
  reload(file = this.configFile): boolean {
    if (!file || !this.tailer || this.stopping) return false;
    let next: Readonly<AgentConfig>;
    try {
      next = loadAgentConfig(file);
    } catch (err) {
      this.m.reloads.inc({ result: 'error' });
      this.log.error({ err, file }, `config reload failed; keeping the running config: ${errorMessage(err)}`);
      return false;
    }
    const fixed = (Object.keys(next) as Array<keyof AgentConfig>).filter((k) => k !== 'inputs' && JSON.stringify(next[k]) !== JSON.stringify(this.config[k]));
    if (fixed.length > 0) this.log.warn({ keys: fixed }, 'these settings changed in the file but only apply after a restart; inputs are reloaded now');
    this.tailer.reload(next.inputs);
    this.config = { ...this.config, inputs: next.inputs };
    this.m.reloads.inc({ result: 'ok' });
    this.log.info({ file, inputs: next.inputs.length }, 'config reloaded (inputs)');
    return true;
  }

  /** Stops within shutdownTimeoutMs (see the top of this file). Safe to call twice. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const started = Date.now();
    const deadline = started + this.config.shutdownTimeoutMs;
    // Leave the shipper a share of the time: the tailer's last chunk is worth less than the publishes under way.
    const tailerDeadline = started + Math.floor(this.config.shutdownTimeoutMs * 0.3);
    if (this.heartbeatTimer) clearInterval(this.heartbeatTimer);
    const step = async (what: string, fn: () => Promise<unknown> | void): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        this.log.error({ err }, `stopping the ${what} failed`);
      }
    };
    await step('tailer', () => this.tailer?.stop(tailerDeadline));
    let unanswered = 0;
    await step('pump', async () => {
      unanswered = (await this.pump?.stop(deadline - 200)) ?? 0;
    });
    await step('shipper', () => this.shipper?.stop(deadline - 100));
    this.writeMeta(false);
    await step('spool', () => this.spool?.close());
    await step('monitor', () => this.monitor?.close());
    this.lock?.release();
    const tookMs = Date.now() - started;
    if (this.spool) this.log.info({ tookMs, unanswered }, 'ferry-agent stopped');
  }
}

/**
 * `ferry-agent run --config <file>`: runs until SIGTERM/SIGINT, then stops cleanly and resolves
 * with the exit code (0). SIGHUP reloads the inputs.
 */
export async function runAgent(values: ParsedCommand['values']): Promise<number> {
  const file = requireConfigPath(values);
  const config = loadAgentConfig(file);
  const log = createLogger({ name: 'ferry-agent', level: config.log.level, base: { agent: config.id } });
  const registry = createRegistry();
  // Signals are handled from the start: a SIGTERM while starting stops the agent once it is up
  // (the spool is consistent at every point, so nothing is lost either way).
  let agent: Agent | undefined;
  let stopSignal: NodeJS.Signals | undefined;
  let onStopped: ((code: number) => void) | undefined;
  const stopped = new Promise<number>((resolve) => (onStopped = resolve));
  const stop = (signal: NodeJS.Signals): void => {
    if (stopSignal !== undefined && agent === undefined) return; // still starting; stop() follows
    if (stopSignal !== undefined) {
      log.warn({ signal }, 'already stopping');
      return;
    }
    stopSignal = signal;
    if (!agent) {
      log.info({ signal }, 'stop requested while starting; stopping once started');
      return;
    }
    log.info({ signal, shutdownTimeoutMs: config.shutdownTimeoutMs }, 'stopping');
    // A last resort if something hangs past the deadline: the spool is consistent at any point.
    setTimeout(() => {
      log.error('shutdown exceeded shutdownTimeoutMs by 2 s; exiting now');
      log.flush();
      process.exit(1);
    }, config.shutdownTimeoutMs + 2000).unref();
    agent.stop().then(
      () => {
        process.removeListener('SIGHUP', onHup);
        log.flush();
        onStopped?.(0);
      },
      (err: unknown) => {
        log.error({ err }, 'stop failed');
        log.flush();
        onStopped?.(1);
      },
    );
  };
  const onHup = (): void => {
    if (!agent) {
      log.warn('SIGHUP while starting: ignored (send it again once started)');
      return;
    }
    log.info({ file }, 'SIGHUP: reloading the config');
    agent.reload(file);
  };
  // Listeners stay installed: a second signal while stopping is logged, it does not kill the process.
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  process.on('SIGHUP', onHup);
  try {
    agent = await Agent.start({ config, log, registry, configFile: file });
  } catch (err) {
    process.removeListener('SIGTERM', stop);
    process.removeListener('SIGINT', stop);
    process.removeListener('SIGHUP', onHup);
    log.fatal({ err }, `ferry-agent could not start: ${errorMessage(err)}`);
    log.flush();
    throw err;
  }
  if (stopSignal !== undefined) {
    const signal = stopSignal;
    stopSignal = undefined;
    stop(signal);
  }
  return stopped;
}
