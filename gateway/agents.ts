/**
 * The agent registry: what the gateway knows about its agents, from their heartbeats (HTTP
 * `POST /v1/heartbeats` and the JetStream input's `onHeartbeat`). Served as `GET /v1/agents`
 * on the HTTP input and the monitor, and as the gauge `ferry_gateway_agents_connected`.
 *
 * Invariants:
 * - one entry per agent id; a heartbeat replaces the entry's data (a heartbeat older than the
 *   one held, by `sentAtMs`, is ignored, so a late NATS/HTTP duplicate cannot roll it back);
 * - an agent is "connected" while its last heartbeat arrived within 3 heartbeat intervals. The
 *   interval is the agent's own, observed between its last two heartbeats (clamped to
 *   [100 ms, 1 h]), else `monitor.agentHeartbeatIntervalMs`;
 * - memory is bounded: agents silent for `agentForgetAfterMs` are dropped, and at most
 *   `maxAgents` are kept (the longest silent one goes first).
 * It holds no I/O: time comes in as arguments (or `now()`), so it is unit-testable.
 */
import type { Heartbeat } from '../shared/protocol.js';
import { Gauge, type Registry } from '../shared/metrics.js';
import type { Logger } from '../shared/log.js';

export type AgentTransport = 'nats' | 'http';

/** One row of `GET /v1/agents`. */
export interface AgentInfo {
  id: string;
  host: string;
  version: string;
  /** the transport the agent says it ships over */
  transport: AgentTransport;
  /** how its last heartbeat reached this gateway */
  via: AgentTransport;
  /** ms since epoch when this gateway received the last heartbeat */
  lastSeenMs: number;
  lastSeen: string;
  /** agent clock: when it sent the last heartbeat, and when it started */
  sentAtMs: number;
  startedAtMs: number;
  connected: boolean;
  heartbeatIntervalMs: number;
  spool: { chunks: number; bytes: number; oldestUnshippedAgeMs: number | null; full: boolean };
  lastShipAtMs: number | null;
  inputs: number;
  files: number;
}

export interface AgentRegistryOptions {
  heartbeatIntervalMs: number;
  forgetAfterMs: number;
  maxAgents: number;
  log: Logger;
  registry: Registry;
  now?: () => number;
}

interface Entry {
  hb: Heartbeat;
  via: AgentTransport;
  lastSeenMs: number;
  intervalMs: number | undefined;
}

const MIN_INTERVAL_MS = 100;
const MAX_INTERVAL_MS = 3600 * 1000;

export class AgentRegistry {
  readonly #agents = new Map<string, Entry>();
  readonly #opts: AgentRegistryOptions;
  readonly #now: () => number;
  readonly #log: Logger;

  constructor(opts: AgentRegistryOptions) {
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#log = opts.log.child({ component: 'agents' });
    // Registered on the component's registry (not the global one), computed at scrape time.
    const connected = (): number => this.connectedCount();
    const known = (): number => this.size;
    new Gauge({
      name: 'ferry_gateway_agents_connected',
      help: 'agents whose last heartbeat arrived within 3 heartbeat intervals',
      registers: [opts.registry],
      collect(this: Gauge) {
        this.set(connected());
      },
    });
    new Gauge({
      name: 'ferry_gateway_agents_known',
      help: 'agents heard from within monitor.agentForgetAfterMs',
      registers: [opts.registry],
      collect(this: Gauge) {
        this.set(known());
      },
    });
  }

  get size(): number {
    this.#prune(this.#now());
    return this.#agents.size;
  }

  /**
   * Records a heartbeat. It must come from parseHeartbeat (a fresh, validated, length-capped
   * copy: what is kept per agent is bounded).
   */
  record(hb: Heartbeat, via: AgentTransport, nowMs: number = this.#now()): void {
    const prev = this.#agents.get(hb.agentId);
    if (prev && hb.sentAtMs < prev.hb.sentAtMs) return;
    let intervalMs = prev?.intervalMs;
    if (prev && hb.sentAtMs > prev.hb.sentAtMs && hb.startedAtMs === prev.hb.startedAtMs) {
      intervalMs = Math.min(MAX_INTERVAL_MS, Math.max(MIN_INTERVAL_MS, hb.sentAtMs - prev.hb.sentAtMs));
    }
    if (!prev) {
      this.#log.info({ agent: hb.agentId, host: hb.host, version: hb.version, transport: hb.transport, via }, 'agent seen for the first time');
    }
    // Delete + set keeps the map in last-seen order: the first entry is the longest silent.
    this.#agents.delete(hb.agentId);
    this.#agents.set(hb.agentId, { hb, via, lastSeenMs: nowMs, intervalMs });
    if (this.#agents.size > this.#opts.maxAgents) {
      const oldest = this.#agents.keys().next();
      if (!oldest.done) {
        this.#agents.delete(oldest.value);
        this.#log.warn({ agent: oldest.value, maxAgents: this.#opts.maxAgents }, 'too many agents tracked: dropped the longest silent one');
      }
    }
  }

  connectedCount(nowMs: number = this.#now()): number {
    let n = 0;
    for (const e of this.#agents.values()) if (this.#connected(e, nowMs)) n++;
    return n;
  }

  /** All known agents, sorted by id. */
  list(nowMs: number = this.#now()): AgentInfo[] {
    this.#prune(nowMs);
    const out: AgentInfo[] = [];
    for (const [id, e] of this.#agents) {
      const hb = e.hb;
      out.push({
        id,
        host: hb.host,
        version: hb.version,
        transport: hb.transport,
        via: e.via,
        lastSeenMs: e.lastSeenMs,
        lastSeen: new Date(e.lastSeenMs).toISOString(),
        sentAtMs: hb.sentAtMs,
        startedAtMs: hb.startedAtMs,
        connected: this.#connected(e, nowMs),
        heartbeatIntervalMs: this.#interval(e),
        spool: { ...hb.spool },
        lastShipAtMs: hb.lastShipAtMs,
        inputs: hb.inputs,
        files: hb.files,
      });
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  #interval(e: Entry): number {
    return e.intervalMs ?? this.#opts.heartbeatIntervalMs;
  }

  #connected(e: Entry, nowMs: number): boolean {
    return nowMs - e.lastSeenMs <= 3 * this.#interval(e);
  }

  #prune(nowMs: number): void {
    for (const [id, e] of this.#agents) {
      // Map order is last-seen order: stop at the first entry that is recent enough.
      if (nowMs - e.lastSeenMs <= this.#opts.forgetAfterMs) break;
      this.#agents.delete(id);
      this.#log.info({ agent: id, lastSeen: new Date(e.lastSeenMs).toISOString() }, 'agent forgotten after a long silence');
    }
  }
}
