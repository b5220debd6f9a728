/**
 * `ferry-agent status`: where the agent stands, whether it runs or not.
 *
 * Sources, in order:
 * 1. the running agent's monitor, `GET http://<monitor.listen>/status` (live figures: in-flight
 *    chunks, retry/blocked state, the tailer's view of each file);
 * 2. otherwise the spool, opened read-only (SQLite WAL lets a reader in while the agent writes):
 *    spool depth, per-file offsets (lag = the file's size now minus the offset), and what the
 *    agent last recorded in the spool's meta table (`agent.status`: last successful ship,
 *    transport state); whether it runs comes from the data directory's lock (./spool/lock.ts),
 *    its pid from `<dataDir>/agent.pid`.
 * Exit code: 0 when the agent runs, 3 when it does not (as `systemctl status`), 1 on errors.
 * Nothing it prints holds URL credentials: the agent records its state redacted, and the meta is
 * redacted again when read.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { formatBytes, requireConfigPath, type ParsedCommand } from '../shared/cli.js';
import { parseListen } from '../shared/config/index.js';
import { VERSION } from '../shared/version.js';
import { redactText } from '../shared/redact.js';
import { loadAgentConfig, type AgentConfig } from './config.js';
import { Spool, SPOOL_FILE, META_SALVAGE } from './spool/spool.js';
import { lockHeld, recordedPid } from './spool/lock.js';
import type { SpoolFullReason } from './spool/types.js';
import type { SalvageReport } from './spool/salvage.js';
import type { PumpStatus } from './shippers/pump.js';

export const EXIT_NOT_RUNNING = 3;
/** spool_meta key the running agent refreshes with AgentMeta (JSON) */
export const META_AGENT_STATUS = 'agent.status';

/** What the running agent records in the spool's meta table (every heartbeat and at stop). */
export interface AgentMeta {
  pid: number;
  running: boolean;
  startedAtMs: number;
  updatedAtMs: number;
  lastShipAtMs: number | null;
  transport: { kind: 'nats' | 'http'; state: string; detail: string; sinceMs: number | null };
  monitor: string | null;
}

export interface FileReport {
  path: string;
  topic: string;
  /** next byte the agent reads */
  offset: number;
  /** the file's size now; null when it is gone or another file holds the path */
  size: number | null;
  lagBytes: number | null;
  note?: string;
}

export interface StatusReport {
  agentId: string;
  version: string;
  running: boolean;
  /** 'agent': live from the running agent; 'spool': read from the spool (agent stopped or monitor off) */
  source: 'agent' | 'spool';
  pid: number | null;
  startedAtMs: number | null;
  dataDir: string;
  transport: { kind: 'nats' | 'http'; state: string; detail: string; sinceMs: number | null };
  spool: {
    chunks: number;
    bytes: number;
    maxBytes: number;
    oldestUnshippedAgeMs: number | null;
    full: boolean;
    /** why reading is paused (agent/spool/types.ts SpoolFullReason), or null */
    fullReason: SpoolFullReason | null;
    /** the spool's files on disk, and the free space of their filesystem (null: unknown) */
    diskBytes: number;
    freeBytes: number | null;
    minFreeBytes: number;
    droppedChunks: number;
    minSeq: number | null;
    maxSeq: number | null;
    /** what was salvaged and lost when this spool replaced a corrupt one, or null */
    salvage: SalvageReport | null;
  };
  lastShipAtMs: number | null;
  shipping: Pick<PumpStatus, 'inFlight' | 'retrying' | 'blocked'> | null;
  tailer: { ok: boolean; detail: string; paused: boolean; files: number } | null;
  files: FileReport[];
  generatedAtMs: number;
  notes: string[];
}

export function transportKind(config: AgentConfig): 'nats' | 'http' {
  return config.transport.nats ? 'nats' : 'http';
}

/**
 * Whether an agent runs on `dataDir` and its pid: the data directory's OS lock answers whether
 * (./spool/lock.ts); the pid file says who. Without a lock file (an agent of an older version),
 * the pid file's process being alive decides.
 */
export function agentProcess(dataDir: string): { running: boolean; pid: number | null } {
  const pid = recordedPid(dataDir);
  const held = lockHeld(dataDir);
  if (held !== null) return { running: held, pid: held ? pid : null };
  if (pid === null) return { running: false, pid: null };
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return { running: false, pid: null };
  }
  // A stale pid file whose pid was reused by an unrelated process (Linux: look at its command line).
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    if (!/ferry|agent/i.test(cmdline)) return { running: false, pid: null };
  } catch {
    // no /proc (or the process just ended): trust the signal check
  }
  return { running: true, pid };
}

/** The spool's `spool.salvage` meta value, or null. */
export function parseSalvage(text: string | undefined): SalvageReport | null {
  if (!text) return null;
  try {
    const r = JSON.parse(text) as SalvageReport;
    return typeof r === 'object' && r !== null && typeof r.chunksSalvaged === 'number' ? r : null;
  } catch {
    return null;
  }
}

function parseMeta(text: string | undefined): AgentMeta | null {
  if (!text) return null;
  try {
    // Redacted again: a spool written by an older agent may hold a server URL with credentials.
    const m = JSON.parse(redactText(text)) as AgentMeta;
    return typeof m === 'object' && m !== null && typeof m.pid === 'number' ? m : null;
  } catch {
    return null;
  }
}

/** Per-file offsets from the spool, with the lag against the file as it is now. */
function offlineFile(config: AgentConfig, s: { path: string; identity: { dev: string; ino: string }; offset: number; input: number }): FileReport {
  const topic = config.inputs[s.input]?.topic ?? '?';
  const base = { path: s.path, topic, offset: s.offset };
  try {
    const st = statSync(s.path, { bigint: true });
    if (String(st.dev) !== s.identity.dev || String(st.ino) !== s.identity.ino) {
      return { ...base, size: null, lagBytes: null, note: 'another file is at this path now (rotated)' };
    }
    const size = Number(st.size);
    return { ...base, size, lagBytes: Math.max(0, size - s.offset) };
  } catch {
    return { ...base, size: null, lagBytes: null, note: 'file gone' };
  }
}

/** The report read from the spool (the agent may run or not). */
export function offlineReport(config: AgentConfig, now = Date.now()): StatusReport {
  const { running, pid } = agentProcess(config.dataDir);
  const notes: string[] = [];
  const report: StatusReport = {
    agentId: config.id,
    version: VERSION,
    running,
    source: 'spool',
    pid,
    startedAtMs: null,
    dataDir: config.dataDir,
    transport: { kind: transportKind(config), state: 'unknown', detail: running ? 'unknown (monitor not reachable)' : 'agent not running', sinceMs: null },
    spool: { chunks: 0, bytes: 0, maxBytes: config.spool.maxBytes, oldestUnshippedAgeMs: null, full: false, fullReason: null, diskBytes: 0, freeBytes: null, minFreeBytes: config.spool.minFreeBytes, droppedChunks: 0, minSeq: null, maxSeq: null, salvage: null },
    lastShipAtMs: null,
    shipping: null,
    tailer: null,
    files: [],
    generatedAtMs: now,
    notes,
  };
  if (!existsSync(join(config.dataDir, SPOOL_FILE))) {
    notes.push(`no spool at ${join(config.dataDir, SPOOL_FILE)}: the agent has not run with this dataDir yet`);
    return report;
  }
  const ro = Spool.openReadOnly(config.dataDir);
  try {
    const st = ro.stats();
    const disk = ro.disk();
    report.spool = {
      chunks: st.chunks,
      bytes: st.bytes,
      maxBytes: config.spool.maxBytes,
      oldestUnshippedAgeMs: st.oldestReadAtMs === null ? null : Math.max(0, now - st.oldestReadAtMs),
      full: st.full,
      ...disk,
      minFreeBytes: config.spool.minFreeBytes,
      droppedChunks: st.droppedChunks,
      minSeq: st.minSeq,
      maxSeq: st.maxSeq,
      salvage: parseSalvage(ro.meta(META_SALVAGE)),
    };
    report.files = ro.fileStates().map((s) => offlineFile(config, s));
    const meta = parseMeta(ro.meta(META_AGENT_STATUS));
    if (meta) {
      report.lastShipAtMs = meta.lastShipAtMs;
      if (running && meta.pid === pid) {
        report.startedAtMs = meta.startedAtMs;
        report.transport = { ...meta.transport, detail: `${meta.transport.detail} (as of ${new Date(meta.updatedAtMs).toISOString()})` };
      } else if (!running) {
        report.transport.detail = `agent not running (stopped ${meta.running ? 'without a clean shutdown' : 'cleanly'}; last seen ${new Date(meta.updatedAtMs).toISOString()})`;
      }
    }
  } finally {
    ro.close();
  }
  if (!running) notes.push('the agent is not running: figures are what it left in the spool');
  else notes.push('figures from the spool: the agent runs but its monitor did not answer (monitor.enabled false?)');
  return report;
}

/** GET /status from the running agent's monitor; null when nobody (or another agent) answers. */
export async function liveReport(config: AgentConfig, timeoutMs = 2000): Promise<StatusReport | null> {
  if (!config.monitor.enabled) return null;
  let { host } = parseListen(config.monitor.listen);
  if (host === '0.0.0.0' || host === '') host = '127.0.0.1';
  if (host === '::') host = '::1';
  const url = `http://${host.includes(':') ? `[${host}]` : host}:${parseListen(config.monitor.listen).port}/status`;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    if (!res.ok) return null;
    const r = (await res.json()) as StatusReport;
    if (r.agentId !== config.id || r.dataDir !== config.dataDir) return null; // another agent's monitor
    return r;
  } catch {
    return null;
  }
}

function fullText(s: StatusReport['spool']): string {
  if (s.fullReason === 'reserve') return `less than ${formatBytes(s.minFreeBytes)} free on the disk`;
  if (s.fullReason === 'disk') return 'the disk was full';
  return 'at its size cap';
}

function ago(ms: number | null, now: number): string {
  if (ms === null) return 'never';
  const s = Math.max(0, Math.round((now - ms) / 1000));
  const age = s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${(s / 3600).toFixed(1)}h`;
  return `${new Date(ms).toISOString()} (${age} ago)`;
}

function dur(ms: number | null): string {
  if (ms === null) return '-';
  return ms < 1000 ? `${ms} ms` : ms < 120_000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 60_000).toFixed(1)} min`;
}

export function formatReport(r: StatusReport, now = Date.now()): string {
  const lines: string[] = [];
  const state = r.running ? `running${r.pid !== null ? ` (pid ${r.pid})` : ''}${r.startedAtMs !== null ? `, started ${ago(r.startedAtMs, now)}` : ''}` : 'NOT RUNNING';
  lines.push(`agent ${r.agentId}: ${state}`);
  lines.push(`data dir: ${r.dataDir} (spool files ${formatBytes(r.spool.diskBytes)}, ${r.spool.freeBytes === null ? 'free space unknown' : `${formatBytes(r.spool.freeBytes)} free`})`);
  lines.push(`transport: ${r.transport.kind} ${r.transport.state}: ${r.transport.detail}`);
  lines.push(`last successful ship: ${ago(r.lastShipAtMs, now)}`);
  const pct = r.spool.maxBytes > 0 ? ((100 * r.spool.bytes) / r.spool.maxBytes).toFixed(1) : '?';
  lines.push(
    `spool: ${r.spool.chunks} chunks, ${formatBytes(r.spool.bytes)} of ${formatBytes(r.spool.maxBytes)} (${pct}%)` +
      `, oldest unshipped ${dur(r.spool.oldestUnshippedAgeMs)}${r.spool.full ? `, FULL (${fullText(r.spool)}; reading paused)` : ''}` +
      `${r.spool.droppedChunks > 0 ? `, ${r.spool.droppedChunks} chunks dropped` : ''}`,
  );
  const sv = r.spool.salvage;
  if (sv) {
    lines.push(
      `spool salvaged ${ago(sv.atMs, now)} from a corrupt one (${sv.movedTo}): ${sv.chunksSalvaged} chunks, ${sv.filesSalvaged} file offsets kept; ` +
        `lost ${sv.chunksLost} unreadable chunks, ${sv.pagesUnreadable} damaged pages`,
    );
  }
  if (r.shipping) {
    const s = r.shipping;
    if (s.blocked) lines.push(`shipping: BLOCKED behind chunk ${s.blocked.seq} (${s.blocked.path}) since ${ago(s.blocked.sinceMs, now)}: ${s.blocked.error}`);
    else if (s.retrying) lines.push(`shipping: retrying chunk ${s.retrying.seq} (attempt ${s.retrying.attempt}): ${s.retrying.error}`);
    else lines.push(`shipping: ok, ${s.inFlight} chunks in flight`);
  }
  if (r.tailer) lines.push(`tailer: ${r.tailer.detail}`);
  if (r.files.length === 0) {
    lines.push('files: none yet');
  } else {
    lines.push('files:');
    const rows = r.files.map((f) => [String(f.offset), f.size === null ? '-' : String(f.size), f.lagBytes === null ? '-' : formatBytes(f.lagBytes), f.topic, f.path + (f.note ? `  (${f.note})` : '')]);
    const head = ['OFFSET', 'SIZE', 'LAG', 'TOPIC', 'PATH'];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
    for (const row of [head, ...rows]) lines.push(`  ${row.map((c, i) => (i < 4 ? c.padEnd(widths[i]!) : c)).join('  ')}`);
  }
  for (const n of r.notes) lines.push(`note: ${n}`);
  return `${lines.join('\n')}\n`;
}

/** The `status` command. */
export async function runStatus(values: ParsedCommand['values'], out: NodeJS.WritableStream = process.stdout): Promise<number> {
  const file = requireConfigPath(values);
  const config = loadAgentConfig(file);
  const report = (await liveReport(config)) ?? offlineReport(config);
  out.write(values.json === true ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.running ? 0 : EXIT_NOT_RUNNING;
}
