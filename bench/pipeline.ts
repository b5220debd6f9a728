// End-to-end benchmark: files -> ferry-agent -> NATS JetStream -> ferry-gateway -> Kafka, with
// its peers on the same machine, the same files and the same Kafka broker.
//
//   npm run build && node dist/bench/pipeline.js [--lines 600000] [--line-bytes 200] [--files 4]
//       [--runs 3] [--systems ferry-eos,ferry-alo,ferry-eos-kafkajs,...,kcat,kcat-headers,rsyslog]
//       [--json out.json]
//
// Method (the same for every system):
// - N lines of `line-bytes` bytes (newline included) in `files` files, written once before
//   anything starts; every run reads the same files (from the page cache).
// - One Kafka 4.x broker (KRaft, JVM -Xms1g -Xmx1g G1) for the whole benchmark; each run gets its
//   own one-partition topic, deleted after the run.
// - Ferry: a fresh nats-server (JetStream, file storage) and a fresh gateway per run, started
//   and ready (/readyz) before the clock starts; the clock starts when the agent is spawned
//   (fresh spool). ferry-eos = `kafka.delivery: exactly-once` (default), ferry-alo =
//   `at-least-once`, both with the default `kafka.driver`; ferry-eos-<driver> and
//   ferry-alo-<driver> name the driver (kafkajs, librdkafka). Everything else is the default configuration, logs at `warn`.
// - kcat: `cat <files> | kcat -P -b <broker> -t <topic>` (librdkafka defaults), clock from spawn;
//   kcat-headers adds five static `-H ferry.*=...` headers like the ones Ferry writes per record.
// - rsyslog: a private `rsyslogd -n -f <conf>` with `imfile` (inotify, from the start of the
//   files) -> `omkafka` (template: the raw line), clock from spawn.
// - Done = the topic's read_committed end offset (last stable offset) has reached its final
//   value: it is polled every `poll-ms`; the finish time is the first poll that saw the final
//   value (so the figure includes up to one poll interval). The run is over once that value is
//   >= N and has not moved for 3 s (and, for Ferry, the gateway reports N records produced).
// - Cost: CPU seconds (utime+stime from /proc/<pid>/stat) sampled at that finish poll, minus the
//   value at the clock start for processes started before it (gateway, NATS, broker); peak RSS
//   = VmHWM from /proc/<pid>/status just before stopping. kcat's own CPU and max RSS come from
//   GNU time, as it exits when done.
// - After the processes stopped, the topic is read back read_committed and every line is
//   checked: present, how many copies, file order, headers.
// Figures are medians over the runs of each metric on its own. Measured, not asserted.
import { execFile } from 'node:child_process';
import { cpSync, readdirSync, symlinkSync, mkdirSync, openSync, writeSync, closeSync, statSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { hostname, cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Admin } from 'kafkajs';
import { startKafka, startNats, tempDir, waitFor, freePort, httpOk, type KafkaBroker, type TempDir } from '../test/harness/index.js';
import { spawnTracked, terminate, which, type Child } from '../test/harness/process.js';
import { stableEndOffset, verifyTopic, type Verification } from './lib/kafka.js';
import { formatProfile, summariseCpuProfile } from './lib/profile.js';
import { findRsyslogd, writeRsyslogConf } from './lib/rsyslog.js';
import { metricSum } from './lib/metrics.js';
import { busiestThread, cpuSeconds, findPid, loadAverage, peakRssMiB, threadTimes, type ThreadTimes } from './lib/proc.js';

const SYSTEMS = [
  'ferry-eos',
  'ferry-alo',
  'ferry-eos-librdkafka',
  'ferry-alo-librdkafka',
  'ferry-eos-kafkajs',
  'ferry-alo-kafkajs',
  'kcat',
  'kcat-headers',
  'rsyslog',
] as const;
type SystemName = (typeof SYSTEMS)[number];
type FerrySystem = Extract<SystemName, `ferry-${string}`>;
const DEFAULT_SYSTEMS: readonly SystemName[] = ['ferry-eos', 'ferry-alo', 'ferry-eos-kafkajs', 'ferry-alo-kafkajs', 'kcat', 'kcat-headers', 'rsyslog'];

function isFerry(system: SystemName): system is FerrySystem {
  return system.startsWith('ferry-');
}

/** The delivery mode and (when named) the driver of a ferry-* system. */
function ferryKafka(system: FerrySystem): { delivery: 'exactly-once' | 'at-least-once'; driver?: string } {
  const [, mode, driver] = system.split('-');
  return { delivery: mode === 'eos' ? 'exactly-once' : 'at-least-once', ...(driver ? { driver } : {}) };
}

/** The built tree (dist/) and the repository root this script runs from. */
const DIST = fileURLToPath(new URL('..', import.meta.url));
const ROOT = join(DIST, '..');

/**
 * Copies the built CLIs (dist/agent, dist/gateway, dist/shared) into `dir` with the package's
 * package.json and a link to its node_modules, and returns the two CLI paths in the copy: a
 * rebuild of dist/ while the benchmark runs (the checkout is shared) cannot change, or break
 * half-way, what is measured.
 */
function snapshotClis(dir: string): { agent: string; gateway: string } {
  const root = join(dir, 'ferry');
  for (const part of ['agent', 'gateway', 'shared']) cpSync(join(DIST, part), join(root, 'dist', part), { recursive: true });
  cpSync(join(ROOT, 'package.json'), join(root, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(root, 'node_modules'), 'dir');
  return { agent: join(root, 'dist', 'agent', 'cli.js'), gateway: join(root, 'dist', 'gateway', 'cli.js') };
}
let CLI = { agent: '', gateway: '' };
const KAFKA_JVM = ['-Xms1g', '-Xmx1g', '-XX:+UseG1GC', '-Djava.awt.headless=true'];
const SETTLE_MS = 3000;

class UsageError extends Error {}
/** A system that cannot run here (not installed, config refused): reported, never measured. */
class SkipError extends Error {}

function parseOptions(): {
  lines: number;
  lineBytes: number;
  files: number;
  runs: number;
  pollMs: number;
  timeoutS: number;
  systems: SystemName[];
  json: string | undefined;
  profile: boolean;
  gatewayKafka: Record<string, unknown>;
  agentSet: Record<string, unknown>;
} {
  const { values } = parseArgs({
    options: {
      lines: { type: 'string', default: '600000' },
      'line-bytes': { type: 'string', default: '200' },
      files: { type: 'string', default: '4' },
      runs: { type: 'string', default: '3' },
      systems: { type: 'string', default: DEFAULT_SYSTEMS.join(',') },
      'poll-ms': { type: 'string', default: '50' },
      'timeout-s': { type: 'string', default: '600' },
      json: { type: 'string' },
      profile: { type: 'boolean', default: false },
      'gateway-kafka': { type: 'string', default: '{}' },
      'agent-set': { type: 'string', default: '{}' },
    },
  });
  const jsonObject = (name: string, raw: string): Record<string, unknown> => {
    let v: unknown;
    try {
      v = JSON.parse(raw);
    } catch (err) {
      throw new UsageError(`--${name} must be a JSON object: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new UsageError(`--${name} must be a JSON object, got ${raw}`);
    return v as Record<string, unknown>;
  };
  const int = (name: string, raw: string, min: number): number => {
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min) throw new UsageError(`--${name} must be an integer >= ${min}, got "${raw}"`);
    return n;
  };
  const systems = values.systems.split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of systems) {
    if (!(SYSTEMS as readonly string[]).includes(s)) throw new UsageError(`--systems: unknown system "${s}" (known: ${SYSTEMS.join(', ')})`);
  }
  const o = {
    lines: int('lines', values.lines, 1),
    lineBytes: int('line-bytes', values['line-bytes'], 64),
    files: int('files', values.files, 1),
    runs: int('runs', values.runs, 1),
    pollMs: int('poll-ms', values['poll-ms'], 5),
    timeoutS: int('timeout-s', values['timeout-s'], 10),
    systems: systems as SystemName[],
    json: values.json,
    profile: values.profile,
    gatewayKafka: jsonObject('gateway-kafka', values['gateway-kafka']),
    agentSet: jsonObject('agent-set', values['agent-set']),
  };
  if (o.files > o.lines) throw new UsageError('--files must not exceed --lines');
  return o;
}

const OPTS = (() => {
  try {
    return parseOptions();
  } catch (err) {
    console.error(err instanceof Error ? err.message : String(err));
    process.exit(2);
  }
})();

/** Writes the benchmark files; returns their paths, lines per file and total bytes. */
function writeFiles(dir: string): { paths: string[]; linesPerFile: number[]; bytes: number } {
  const paths: string[] = [];
  const linesPerFile: number[] = [];
  let bytes = 0;
  const base = Math.floor(OPTS.lines / OPTS.files);
  const filler = 'x'.repeat(OPTS.lineBytes);
  let global = 0;
  for (let f = 0; f < OPTS.files; f++) {
    const count = f === OPTS.files - 1 ? OPTS.lines - base * (OPTS.files - 1) : base;
    const path = join(dir, `bench-${f}.log`);
    const fd = openSync(path, 'w');
    for (let i = 0; i < count; i += 10_000) {
      let text = '';
      for (let id = i; id < Math.min(count, i + 10_000); id++) {
        const head = `${new Date(1_700_000_000_000 + global++).toISOString()} INFO f=${f} id=${String(id).padStart(7, '0')} `;
        text += (head + filler).slice(0, OPTS.lineBytes - 1) + '\n';
      }
      writeSync(fd, text);
    }
    closeSync(fd);
    paths.push(path);
    linesPerFile.push(count);
    bytes += statSync(path).size;
  }
  return { paths, linesPerFile, bytes };
}

interface Watched {
  name: string;
  pid: number;
  /** CPU seconds at the clock start (0 for a process spawned at the clock start). */
  base: number;
  /** A process of the system under test (its CPU and RSS are reported as the system's cost). */
  own: boolean;
  /** Set when the process must not exit during the run. */
  child?: Child;
  /** Per-thread scheduler times at the clock start, for the processes whose threads are watched. */
  threads?: Map<number, ThreadTimes>;
}

/** A watched process, its thread times sampled from now on (empty: spawned at the clock start). */
function watched(name: string, pid: number, own: boolean, opts: { child?: Child; spawnedNow?: boolean; threads?: boolean } = {}): Watched {
  return {
    name,
    pid,
    own,
    base: opts.spawnedNow ? 0 : (cpuSeconds(pid) ?? 0),
    ...(opts.child ? { child: opts.child } : {}),
    ...(opts.threads ? { threads: opts.spawnedNow ? new Map<number, ThreadTimes>() : threadTimes(pid) } : {}),
  };
}

interface ProcCost {
  name: string;
  own: boolean;
  cpuS: number;
  peakRssMiB: number | undefined;
  /** The thread that used the most CPU during the run: its CPU and run-queue wait in seconds. */
  busiest?: { comm: string; cpuS: number; waitS: number };
}

interface RunResult {
  system: SystemName;
  run: number;
  ok: boolean;
  error?: string;
  wallS: number;
  /** seconds from the clock start until the first record was readable (read_committed) */
  firstRecordS: number;
  procs: ProcCost[];
  verification?: Verification;
  loadBefore: string;
  loadAfter: string;
  finalOffset: number;
  notes?: string;
  profiles?: string;
}

function q(s: string): string {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

function sinceS(t0: bigint, t: bigint): number {
  return Number(t - t0) / 1e9;
}

/**
 * Polls the topic's last stable offset until it is >= lines and has settled; returns the time of
 * the first poll that saw the final value and every watched process's CPU at that poll.
 */
async function watch(
  admin: Admin,
  topic: string,
  t0: bigint,
  procs: Watched[],
  extraDone?: () => Promise<boolean>,
  diagnose?: () => Promise<string>,
): Promise<Measured> {
  const deadline = Date.now() + OPTS.timeoutS * 1000;
  let value = -1;
  let at = t0;
  let first: bigint | undefined;
  let cpuAt = new Map<string, number>();
  let threadsAt = new Map<string, Map<number, ThreadTimes>>();
  let changedAt = Date.now();
  for (;;) {
    let lso: number | undefined;
    try {
      lso = await stableEndOffset(admin, topic);
    } catch {
      lso = undefined; // a metadata hiccup: the next poll tells
    }
    const now = process.hrtime.bigint();
    if (lso !== undefined && lso !== value) {
      value = lso;
      at = now;
      changedAt = Date.now();
      if (lso > 0) first ??= now;
      cpuAt = new Map(procs.map((p) => [p.name, (cpuSeconds(p.pid) ?? Number.NaN) - p.base]));
      threadsAt = new Map(procs.filter((p) => p.threads).map((p) => [p.name, threadTimes(p.pid)]));
    }
    for (const p of procs) {
      if (p.child && !p.child.running()) {
        throw new Error(`${p.name} exited during the run (${value} of ${OPTS.lines} records in Kafka); its output:\n${p.child.output.text(20)}`);
      }
    }
    if (value >= OPTS.lines && Date.now() - changedAt >= SETTLE_MS && (!extraDone || (await extraDone()))) {
      const wallS = sinceS(t0, at);
      const costs = procs.map((p): ProcCost => {
        const busy = p.threads ? busiestThread(p.threads, threadsAt.get(p.name) ?? new Map<number, ThreadTimes>()) : undefined;
        return {
          name: p.name,
          own: p.own,
          cpuS: cpuAt.get(p.name) ?? Number.NaN,
          peakRssMiB: peakRssMiB(p.pid),
          ...(busy ? { busiest: { comm: busy.comm, cpuS: busy.cpuS, waitS: busy.waitS } } : {}),
        };
      });
      return { wallS, firstRecordS: first === undefined ? Number.NaN : sinceS(t0, first), procs: costs, finalOffset: value };
    }
    if (Date.now() > deadline) {
      const outputs = procs
        .filter((p) => p.child)
        .map((p) => `--- ${p.name} output ---\n${p.child!.output.text(15)}`)
        .join('\n');
      const more = diagnose ? `\n${await diagnose().catch((err: unknown) => `(no diagnosis: ${String(err)})`)}` : '';
      throw new Error(`timed out after ${OPTS.timeoutS} s: the topic's stable end offset is ${value} of ${OPTS.lines} lines${more}\n${outputs}`);
    }
    await new Promise((r) => setTimeout(r, OPTS.pollMs));
  }
}

interface Measured {
  wallS: number;
  firstRecordS: number;
  procs: ProcCost[];
  finalOffset: number;
  /** What the system reported about its own work, when it does. */
  notes?: string;
  /** `--profile`: where the agent's and gateway's CPU went. */
  profiles?: string;
}

/** What the gateway did, from its /metrics: flushes, records per flush, time producing. */
async function gatewaySummary(port: number): Promise<string> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
  const flushes = metricSum(text, 'ferry_gateway_kafka_produce_seconds_count');
  const produceS = metricSum(text, 'ferry_gateway_kafka_produce_seconds_sum');
  const records = metricSum(text, 'ferry_gateway_kafka_flush_records_sum');
  const chunks = metricSum(text, 'ferry_gateway_jetstream_chunks_total');
  const tx = metricSum(text, 'ferry_gateway_kafka_transactions_total');
  return (
    `gateway: ${chunks} chunks from JetStream, ${flushes} flushes (${tx} transactions) of ${fmtInt(records / flushes)} records on average, ` +
    `${fmt(produceS, 2)} s spent producing (${fmt((1000 * produceS) / flushes, 0)} ms per flush)`
  );
}

async function gatewayRecords(port: number, topic: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) });
  const text = await res.text();
  let sum = 0;
  for (const m of text.matchAll(/^ferry_gateway_kafka_records_total\{([^}]*)\} (\S+)$/gm)) {
    if (m[1]!.includes(`topic="${topic}"`)) sum += Number(m[2]);
  }
  return sum;
}

interface Env {
  kafka: KafkaBroker;
  admin: Admin;
  brokerPid: number;
  work: TempDir;
  logs: string;
  paths: string[];
}

function broker(env: Env): Watched {
  return watched('kafka broker', env.brokerPid, false);
}

async function runFerry(env: Env, system: FerrySystem, run: number, topic: string): Promise<Measured> {
  const dir = join(env.work.path, `${system}-${run}`);
  mkdirSync(dir, { recursive: true });
  const nats = await startNats();
  const profDir = (name: string): string => join(dir, `profile-${name}`);
  const nodeArgs = (name: string): string[] => (OPTS.profile ? ['--cpu-prof', '--cpu-prof-dir', profDir(name)] : []);
  let result!: Measured;
  let gateway: Child | undefined;
  let agent: Child | undefined;
  try {
    const natsPid = findPid(nats.storeDir);
    if (natsPid === undefined) throw new Error(`cannot find the nats-server process of ${nats.storeDir}`);
    const port = await freePort();
    const gatewayConfig = join(dir, 'gateway.yaml');
    writeFileSync(
      gatewayConfig,
      JSON.stringify({
        id: `gw-${system}-${run}`,
        log: { level: 'warn' },
        kafka: { brokers: env.kafka.brokers, ...ferryKafka(system), ...OPTS.gatewayKafka },
        nats: { servers: [nats.url] },
        monitor: { listen: `127.0.0.1:${port}` },
      }),
    );
    gateway = await spawnTracked(process.execPath, [...nodeArgs('gateway'), CLI.gateway, 'run', '--config', gatewayConfig]);
    const gw = gateway;
    await waitFor(
      async () => {
        if (!gw.running()) throw new Error(`ferry-gateway exited while starting:\n${gw.output.text(20)}`);
        return httpOk(`http://127.0.0.1:${port}/readyz`);
      },
      90_000,
      'ferry-gateway /readyz',
      { intervalMs: 50 },
    );
    const agentConfig = join(dir, 'agent.yaml');
    writeFileSync(
      agentConfig,
      JSON.stringify({
        id: `bench-${system}-${run}`,
        dataDir: join(dir, 'agent-data'),
        log: { level: 'warn' },
        inputs: [{ paths: [join(env.logs, '*.log')], topic }],
        transport: { nats: { servers: [nats.url] } },
        monitor: { enabled: false },
        ...OPTS.agentSet,
      }),
    );
    const gatewayW = watched('gateway', gw.pid, true, { child: gw, threads: true });
    const natsW = watched('nats-server', natsPid, false, { threads: true });
    const brokerW = broker(env);
    const t0 = process.hrtime.bigint();
    agent = await spawnTracked(process.execPath, [...nodeArgs('agent'), CLI.agent, 'run', '--config', agentConfig]);
    const procs: Watched[] = [watched('agent', agent.pid, true, { child: agent, spawnedNow: true, threads: true }), gatewayW, natsW, brokerW];
    const m = await watch(
      env.admin,
      topic,
      t0,
      procs,
      async () => (await gatewayRecords(port, topic)) >= OPTS.lines,
      async () => {
        const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(2000) })).text();
        return text
          .split('\n')
          .filter((l) => /^ferry_gateway_(kafka_(records|chunks|errors|transactions)_total|jetstream_(chunks|errors|redeliveries)_total)/.test(l))
          .join('\n');
      },
    );
    result = { ...m, notes: await gatewaySummary(port).catch((err: unknown) => `gateway metrics unavailable: ${String(err)}`) };
  } finally {
    if (agent && (await terminate(agent, 'SIGTERM', 15_000))) console.error(`${system} run ${run}: the agent did not stop within 15 s of SIGTERM`);
    if (gateway && (await terminate(gateway, 'SIGTERM', 20_000))) console.error(`${system} run ${run}: the gateway did not stop within 20 s of SIGTERM`);
    await nats.stop();
  }
  if (OPTS.profile) {
    // Written by each process at its exit (SIGTERM drains, then exits 0).
    result.profiles = ['agent', 'gateway']
      .map((name) => {
        const files = existsSync(profDir(name)) ? readdirSync(profDir(name)).filter((f) => f.endsWith('.cpuprofile')) : [];
        return files[0] ? formatProfile(name, summariseCpuProfile(join(profDir(name), files[0]))) : `${name}: no CPU profile written`;
      })
      .join('\n');
  }
  return result;
}

const KCAT_HEADERS = [
  '-H', 'ferry.agent=bench-agent-01',
  '-H', `ferry.host=${hostname()}`,
  '-H', 'ferry.path=/var/log/app/bench-0.log',
  '-H', 'ferry.offset=118000000',
  '-H', 'ferry.seq=12345',
];

async function runKcat(env: Env, system: 'kcat' | 'kcat-headers', run: number, topic: string): Promise<Measured> {
  const kcat = which('kcat');
  if (!kcat) throw new SkipError('kcat is not installed (apt-get install -y kcat)');
  if (!existsSync('/usr/bin/time')) throw new SkipError('GNU time (/usr/bin/time) is missing: it measures kcat, which exits when done');
  const dir = join(env.work.path, `${system}-${run}`);
  mkdirSync(dir, { recursive: true });
  const timeFile = join(dir, 'kcat.time');
  const headers = system === 'kcat-headers' ? ` ${KCAT_HEADERS.map(q).join(' ')}` : '';
  const script = `cat ${env.paths.map(q).join(' ')} | /usr/bin/time -f '%U %S %M' -o ${q(timeFile)} ${q(kcat)} -P -b ${q(env.kafka.bootstrap)} -t ${q(topic)}${headers}`;
  const brokerW = broker(env);
  const t0 = process.hrtime.bigint();
  const child = await spawnTracked('sh', ['-c', script]);
  try {
    const w = await watch(env.admin, topic, t0, [brokerW]);
    const exit = await child.exited;
    if (exit.code !== 0) throw new Error(`kcat exited with ${exit.signal ?? exit.code}:\n${child.output.text(20)}`);
    const [user, sys, maxKb] = readFileSync(timeFile, 'utf8').trim().split('\n').pop()!.split(' ').map(Number);
    const own: ProcCost = { name: 'kcat', own: true, cpuS: user! + sys!, peakRssMiB: maxKb! / 1024 };
    return { ...w, procs: [own, ...w.procs] };
  } finally {
    await terminate(child, 'SIGKILL', 0);
  }
}


function execText(file: string, args: string[]): Promise<{ ok: boolean; text: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: 30_000 }, (err, stdout, stderr) => resolve({ ok: !err, text: `${stdout}${stderr}`.trim() }));
  });
}

async function runRsyslog(env: Env, run: number, topic: string): Promise<Measured> {
  const found = findRsyslogd();
  if ('missing' in found) throw new SkipError(found.missing);
  const rsyslogd = found.path;
  const dir = join(env.work.path, `rsyslog-${run}`);
  const conf = writeRsyslogConf(dir, { bootstrap: env.kafka.bootstrap, topic, logs: env.logs, tag: 'bench' });
  const check = await execText(rsyslogd, ['-N1', '-f', conf]);
  if (!check.ok) throw new SkipError(`rsyslogd refuses the benchmark config: ${check.text}`);
  const brokerW = broker(env);
  const t0 = process.hrtime.bigint();
  const child = await spawnTracked(rsyslogd, ['-n', '-f', conf, '-i', join(dir, 'rsyslogd.pid')]);
  try {
    const procs: Watched[] = [watched('rsyslogd', child.pid, true, { child, spawnedNow: true, threads: true }), brokerW];
    return await watch(env.admin, topic, t0, procs);
  } finally {
    if (await terminate(child, 'SIGTERM', 15_000)) console.error(`rsyslog run ${run}: rsyslogd did not stop within 15 s of SIGTERM`);
  }
}

function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function fmt(n: number, digits = 1): string {
  return Number.isFinite(n) ? n.toFixed(digits) : '?';
}

function fmtInt(n: number): string {
  return Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : '?';
}

function describeRun(r: RunResult, bytes: number): string {
  if (!r.ok) return `${r.system} run ${r.run}: FAILED: ${r.error}`;
  const v = r.verification;
  const check = v
    ? `${v.records} records read back, ${v.missing} missing, ${v.duplicates} duplicates, ${v.outOfOrder} out of file order, ${v.foreign} foreign` +
      `${v.withoutHeaders ? `, ${v.withoutHeaders} without headers` : ''}${v.complete ? '' : ' (read incomplete)'}`
    : 'not verified';
  const procs = r.procs
    .map(
      (p) =>
        `${p.name} ${fmt(p.cpuS, 2)} CPU-s (${fmt((100 * p.cpuS) / r.wallS, 0)}% of a core)${p.peakRssMiB === undefined ? '' : `, peak RSS ${fmt(p.peakRssMiB, 0)} MiB`}` +
        (p.busiest ? `, busiest thread "${p.busiest.comm}" on CPU ${fmt((100 * p.busiest.cpuS) / r.wallS, 0)}% + waiting for a CPU ${fmt((100 * p.busiest.waitS) / r.wallS, 0)}%` : ''),
    )
    .join('; ');
  return (
    `${r.system} run ${r.run}: ${fmt(r.wallS, 2)} s (first record at ${fmt(r.firstRecordS, 2)} s), ${fmtInt(OPTS.lines / r.wallS)} lines/s, ${fmt(bytes / 1e6 / r.wallS, 1)} MB/s; ${procs}; ` +
    `end offset ${r.finalOffset}; ${r.notes ? `${r.notes}; ` : ''}${check}; load before ${r.loadBefore}, after ${r.loadAfter}`
  );
}

function verdict(v: Verification | undefined, system: SystemName): { ok: boolean; text: string } {
  if (!v) return { ok: false, text: 'not verified' };
  const problems: string[] = [];
  if (v.missing) problems.push(`${v.missing} missing`);
  if (v.foreign) problems.push(`${v.foreign} foreign`);
  if (v.duplicates) problems.push(`${v.duplicates} dup`);
  if (v.outOfOrder) problems.push(`${v.outOfOrder} out of order`);
  if (v.withoutHeaders) problems.push(`${v.withoutHeaders} without headers`);
  if (!v.complete) problems.push('read incomplete');
  // at-least-once may duplicate by contract; anything else is a finding
  const ok = v.missing === 0 && v.foreign === 0 && v.complete && ((isFerry(system) && ferryKafka(system).delivery === 'at-least-once') || v.duplicates === 0);
  return { ok, text: problems.length ? problems.join(', ') : 'all once, in order' };
}

function table(results: RunResult[], bytes: number, skipped: Map<SystemName, string>): string {
  const out: string[] = [];
  out.push('| system | lines/s | MB/s | seconds | CPU-s (own processes) | peak RSS MiB | Kafka broker CPU-s | NATS CPU-s | runs ok | check |');
  out.push('|---|---|---|---|---|---|---|---|---|---|');
  for (const system of OPTS.systems) {
    const skip = skipped.get(system);
    if (skip !== undefined) {
      out.push(`| ${system} | skipped: ${skip.split('\n')[0]} | | | | | | | 0/${OPTS.runs} | |`);
      continue;
    }
    const all = results.filter((r) => r.system === system);
    const good = all.filter((r) => r.ok);
    if (good.length === 0) {
      out.push(`| ${system} | failed: ${(all[0]?.error ?? 'no run').split('\n')[0]} | | | | | | | 0/${all.length} | |`);
      continue;
    }
    const wall = median(good.map((r) => r.wallS));
    const names = good[0]!.procs.map((p) => p.name);
    const per = (name: string, f: (p: ProcCost) => number | undefined): number =>
      median(good.map((r) => f(r.procs.find((p) => p.name === name) ?? { name, own: false, cpuS: Number.NaN, peakRssMiB: undefined }) ?? Number.NaN));
    const own = names.filter((n) => good[0]!.procs.find((p) => p.name === n)?.own);
    const ownCpu = median(good.map((r) => r.procs.filter((p) => p.own).reduce((s, p) => s + p.cpuS, 0)));
    const cpuText = own.length > 1 ? `${fmt(ownCpu, 2)} (${own.map((n) => `${n} ${fmt(per(n, (p) => p.cpuS), 2)}`).join(' + ')})` : fmt(ownCpu, 2);
    const rssText = own.map((n) => `${own.length > 1 ? `${n} ` : ''}${fmt(per(n, (p) => p.peakRssMiB), 0)}`).join(' / ');
    const checks = all.map((r) => (r.ok ? verdict(r.verification, system).text : 'failed'));
    const uniq = [...new Set(checks)].join('; ');
    out.push(
      `| ${system} | ${fmtInt(OPTS.lines / wall)} | ${fmt(bytes / 1e6 / wall, 1)} | ${fmt(wall, 2)} | ${cpuText} | ${rssText} | ` +
        `${fmt(per('kafka broker', (p) => p.cpuS), 2)} | ${names.includes('nats-server') ? fmt(per('nats-server', (p) => p.cpuS), 2) : '-'} | ${good.length}/${all.length} | ${uniq} |`,
    );
  }
  return out.join('\n');
}

async function main(): Promise<void> {
  const command = `node dist/bench/pipeline.js ${process.argv.slice(2).join(' ')}`.trim();
  const work = tempDir('bench-pipeline');
  let kafka: KafkaBroker | undefined;
  let admin: Admin | undefined;
  try {
    const logs = join(work.path, 'logs');
    mkdirSync(logs);
    const { paths, linesPerFile, bytes } = writeFiles(logs);
    CLI = snapshotClis(work.path);
    console.log(`# ${command}`);
    console.log(
      `${OPTS.lines} lines x ${OPTS.lineBytes} B in ${OPTS.files} files = ${(bytes / 1e6).toFixed(1)} MB; ${OPTS.runs} run(s) per system; ` +
        `node ${process.version}; ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}); load ${loadAverage()}`,
    );
    const kafkaStart = Date.now();
    kafka = await startKafka({ jvmArgs: KAFKA_JVM });
    const brokerPid = findPid('kafka.Kafka', kafka.dataDir);
    if (brokerPid === undefined) throw new Error(`cannot find the Kafka broker process of ${kafka.dataDir}`);
    admin = kafka.client().admin();
    await admin.connect();
    if (OPTS.profile) console.log('--profile: the agent and gateway run under the V8 CPU profiler; their figures are slower than unprofiled ones');
    console.log(`Kafka broker on ${kafka.bootstrap} (JVM ${KAFKA_JVM.join(' ')}), started in ${((Date.now() - kafkaStart) / 1000).toFixed(1)} s`);
    const env: Env = { kafka, admin, brokerPid, work, logs, paths };

    const results: RunResult[] = [];
    const skipped = new Map<SystemName, string>();
    for (let run = 1; run <= OPTS.runs; run++) {
      // Systems interleaved run by run, so a change of load on the machine hits them all alike.
      for (const system of OPTS.systems) {
        if (skipped.has(system)) continue;
        const topic = `bench-${system}-${run}`;
        const loadBefore = loadAverage();
        const r: RunResult = { system, run, ok: false, wallS: Number.NaN, firstRecordS: Number.NaN, procs: [], loadBefore, loadAfter: '', finalOffset: 0 };
        try {
          await kafka.createTopic(topic);
          const m =
            isFerry(system)
              ? await runFerry(env, system, run, topic)
              : system === 'kcat' || system === 'kcat-headers'
                ? await runKcat(env, system, run, topic)
                : await runRsyslog(env, run, topic);
          r.loadAfter = loadAverage();
          Object.assign(r, m);
          r.verification = await verifyTopic(kafka.client(), admin, topic, {
            linesPerFile,
            headers: system === 'kcat' || system === 'rsyslog' ? 0 : 5,
          });
          r.ok = verdict(r.verification, system).ok;
          if (!r.ok) r.error = `the records in Kafka do not match the files: ${verdict(r.verification, system).text}`;
        } catch (err) {
          if (err instanceof SkipError) {
            skipped.set(system, err.message);
            console.log(`${system}: skipped: ${err.message}`);
            continue;
          }
          r.error = err instanceof Error ? err.message : String(err);
          r.loadAfter ||= loadAverage();
        } finally {
          await admin.deleteTopics({ topics: [topic], timeout: 30_000 }).catch(() => undefined);
        }
        results.push(r);
        console.log(describeRun(r, bytes));
        if (r.profiles) console.log(r.profiles);
      }
    }
    const cpuSelf = process.cpuUsage();
    console.log('');
    console.log(`Medians over ${OPTS.runs} run(s) (each column on its own); MB = 10^6 bytes of file (newlines included); load average at the end ${loadAverage()}:`);
    console.log('');
    console.log(table(results, bytes, skipped));
    console.log('');
    console.log(
      `seconds: from spawning the agent / kcat / rsyslogd until the topic's read_committed end offset reached its final value (polled every ${OPTS.pollMs} ms). ` +
        'CPU-s and peak RSS: the system\'s own processes; Kafka broker and NATS CPU-s over the same interval. ' +
        `This benchmark process used ${((cpuSelf.user + cpuSelf.system) / 1e6).toFixed(1)} CPU-s in all (polling, verification reads).`,
    );
    for (const [system, why] of skipped) console.log(`${system} skipped: ${why}`);
    if (OPTS.json) writeFileSync(OPTS.json, JSON.stringify({ command, lines: OPTS.lines, lineBytes: OPTS.lineBytes, files: OPTS.files, bytes, results, skipped: Object.fromEntries(skipped) }, null, 2));
    if (results.some((r) => !r.ok)) process.exitCode = 1;
  } finally {
    await admin?.disconnect().catch(() => undefined);
    await kafka?.destroy();
    await work.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
