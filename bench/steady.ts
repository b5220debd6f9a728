// Benchmark: Ferry and rsyslog at a host's normal rate, side by side in one run.
//
//   npm run build && node dist/bench/steady.js [--rates 1,100,5000,10000] [--seconds 20]
//        [--warmup-s 3] [--line-bytes 130] [--many-files 1000] [--many-rate 5] [--profile]
//        [--agent key.path=value ...] [--gateway key.path=value ...]
//
// One Kafka broker and one nats-server (test harness, free ports, temporary data) for the whole
// run. Per scenario (each rate, then `--many-files` files at `--many-rate` lines/s each):
// a fresh ferry-gateway (defaults: exactly-once, librdkafka) and ferry-agent (defaults, NATS)
// tail one directory, rsyslogd (imfile -> omkafka) another, each into its own topic. This
// process writes the same rate into both directories, one write() per line, each line carrying
// its write time. `kcat -C` reads each topic `read_committed` (unbuffered) and this process
// stamps every line as it arrives: latency = arrival - write time, for lines written after the
// warm-up. CPU share = utime + stime from /proc over the measured interval / its length; peak
// RSS = VmHWM (start-up included). After the writers stop, a drain of up to 15 s checks that
// every line arrived. `--profile` runs the agent and gateway under the V8 CPU profiler and prints
// where their time went per scenario (start-up included). `--agent`/`--gateway` set config keys
// over the defaults (to try a setting). Figures are printed, never asserted.
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, existsSync, mkdirSync, openSync, readdirSync, writeFileSync, writeSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { startKafka, startNats, tempDir, waitFor, freePort, httpOk, type KafkaBroker, type NatsServer, type TempDir } from '../test/harness/index.js';
import { spawnTracked, terminate, which, type Child } from '../test/harness/process.js';
import { cpuSeconds, loadAverage, peakRssMiB } from './lib/proc.js';
import { formatProfile, summariseCpuProfile } from './lib/profile.js';
import { findRsyslogd, writeRsyslogConf } from './lib/rsyslog.js';
import { metricSum } from './lib/metrics.js';

const { values: args } = parseArgs({
  options: {
    rates: { type: 'string', default: '1,100,5000,10000' },
    seconds: { type: 'string', default: '20' },
    'warmup-s': { type: 'string', default: '3' },
    'line-bytes': { type: 'string', default: '130' },
    'many-files': { type: 'string', default: '1000' },
    'many-rate': { type: 'string', default: '5' },
    profile: { type: 'boolean', default: false },
    agent: { type: 'string', multiple: true, default: [] },
    gateway: { type: 'string', multiple: true, default: [] },
  },
});
const RATES = args.rates.split(',').filter(Boolean).map(Number);
const SECONDS = Number(args.seconds);
const WARMUP_S = Number(args['warmup-s']);
const LINE_BYTES = Number(args['line-bytes']);
const MANY_FILES = Number(args['many-files']);
const MANY_RATE = Number(args['many-rate']);
const PROFILE = args.profile;
const DIST = fileURLToPath(new URL('..', import.meta.url));

/** `--agent chunk.maxDelayMs=50`: sets one config key (a dotted path; the value is JSON or else a string) over Ferry's defaults. */
function withSettings(base: Record<string, unknown>, settings: string[]): Record<string, unknown> {
  for (const s of settings) {
    const eq = s.indexOf('=');
    if (eq <= 0) throw new Error(`expected key.path=value, got "${s}"`);
    const keys = s.slice(0, eq).split('.');
    const raw = s.slice(eq + 1);
    let value: unknown;
    try {
      value = JSON.parse(raw);
    } catch {
      value = raw;
    }
    let node = base;
    for (const k of keys.slice(0, -1)) {
      const next = node[k];
      node = (node[k] = typeof next === 'object' && next !== null ? next : {}) as Record<string, unknown>;
    }
    node[keys.at(-1)!] = value;
  }
  return base;
}

interface Scenario {
  name: string;
  files: number;
  /** lines per second per file */
  rate: number;
}

/** Lines arriving from one topic through `kcat -C`, with their latencies. */
class Arrivals {
  readonly latenciesMs: number[] = [];
  received = 0;
  private rest = '';

  constructor(
    readonly child: ChildProcess,
    private readonly measuredFromMs: number,
  ) {
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (text: string) => {
      const now = performance.timeOrigin + performance.now();
      const lines = (this.rest + text).split('\n');
      this.rest = lines.pop()!;
      for (const line of lines) {
        const m = / t=(\d+\.\d+) /.exec(line);
        if (!m) continue;
        this.received++;
        const t = Number(m[1]);
        if (t >= this.measuredFromMs) this.latenciesMs.push(now - t);
      }
    });
  }
}

function consume(bootstrap: string, topic: string, measuredFromMs: number): Arrivals {
  const child = spawn('kcat', ['-C', '-b', bootstrap, '-t', topic, '-o', 'beginning', '-u', '-q', '-f', '%s\n', '-X', 'isolation.level=read_committed'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Arrivals(child, measuredFromMs);
}

/** Writes `rate` lines/s into each of `paths`, one write() per line, until stopped. */
function writer(paths: readonly string[], rate: number, tag: string): { stop: () => number } {
  const manyFiles = paths.length > 64;
  const fds = manyFiles ? [] : paths.map((p) => openSync(p, 'a'));
  const filler = 'x'.repeat(LINE_BYTES);
  const t0 = performance.now();
  let written = 0;
  let stopped = false;
  const perFile = new Array<number>(paths.length).fill(0);
  const tick = (): void => {
    if (stopped) return;
    const due = Math.floor(((performance.now() - t0) / 1000) * rate);
    for (let f = 0; f < paths.length; f++) {
      while (perFile[f]! < due) {
        const head = `${tag} f=${f} n=${perFile[f]} t=${(performance.timeOrigin + performance.now()).toFixed(3)} `;
        const line = (head + filler).slice(0, LINE_BYTES - 1) + '\n';
        if (manyFiles) appendFileSync(paths[f]!, line);
        else writeSync(fds[f]!, line);
        perFile[f]!++;
        written++;
      }
    }
    timer = setTimeout(tick, 1);
  };
  let timer = setTimeout(tick, 1);
  return {
    stop: () => {
      stopped = true;
      clearTimeout(timer);
      for (const fd of fds) closeSync(fd);
      return written;
    },
  };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

interface Row {
  scenario: string;
  system: string;
  cpuPct: Record<string, number>;
  rssMiB: Record<string, number | undefined>;
  written: number;
  received: number;
  p50: number;
  p99: number;
  max: number;
}

/** Node options for a Ferry process: the CPU profiler with --profile. */
function nodeArgs(dir: string, name: string): string[] {
  return PROFILE ? ['--cpu-prof', '--cpu-prof-dir', join(dir, `profile-${name}`)] : [];
}

function profileText(dir: string, name: string): string {
  const d = join(dir, `profile-${name}`);
  const files = existsSync(d) ? readdirSync(d).filter((f) => f.endsWith('.cpuprofile')) : [];
  return files[0] ? formatProfile(name, summariseCpuProfile(join(d, files[0]))) : `${name}: no CPU profile written`;
}

function ferryDir(work: TempDir, name: string): string {
  return join(work.path, `ferry-${name}`);
}

/** How many descriptors a process holds open (files, sockets, watches), or '-' once it is gone. */
function openFds(pid: number): string {
  try {
    return String(readdirSync(`/proc/${pid}/fd`).length);
  } catch {
    return '-';
  }
}

/** `name_sum` and `name_count` of a histogram in Prometheus text (summed over labels). */
function histogram(text: string, name: string): { sum: number; count: number } {
  return { sum: metricSum(text, `${name}_sum`), count: metricSum(text, `${name}_count`) };
}

/** Where Ferry's latency goes, from its own metrics: chunks, the agent's publish -> PubAck, the gateway's flushes. */
async function ferryInside(agentPort: number, gatewayPort: number): Promise<string> {
  const [a, g] = await Promise.all([agentPort, gatewayPort].map(async (port) => (await fetch(`http://127.0.0.1:${port}/metrics`)).text()));
  const ship = histogram(a!, 'ferry_ship_latency_seconds');
  const produce = histogram(g!, 'ferry_gateway_kafka_produce_seconds');
  const records = histogram(g!, 'ferry_gateway_kafka_flush_records');
  const ms = (h: { sum: number; count: number }): string => (h.count > 0 ? ((1000 * h.sum) / h.count).toFixed(1) : '-');
  return `chunks shipped ${ship.count}, publish -> PubAck mean ${ms(ship)} ms; gateway flushes ${produce.count} (${records.count > 0 ? (records.sum / records.count).toFixed(1) : '-'} records each), produce + commit mean ${ms(produce)} ms`;
}

async function startFerry(work: TempDir, kafka: KafkaBroker, nats: NatsServer, logs: string, topic: string, name: string): Promise<{ gateway: Child; agent: Child; ports: [number, number] }> {
  const dir = ferryDir(work, name);
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const agentPort = await freePort();
  const gatewayConfig = join(dir, 'gateway.yaml');
  const gatewaySettings = { id: `gw-${name}`, log: { level: 'warn' }, kafka: { brokers: kafka.brokers }, nats: { servers: [nats.url] }, monitor: { listen: `127.0.0.1:${port}` } };
  writeFileSync(gatewayConfig, JSON.stringify(withSettings(gatewaySettings, args.gateway)));
  const gateway = await spawnTracked(process.execPath, [...nodeArgs(dir, 'gateway'), join(DIST, 'gateway/cli.js'), 'run', '--config', gatewayConfig]);
  await waitFor(() => httpOk(`http://127.0.0.1:${port}/readyz`), 90_000, 'ferry-gateway /readyz', { intervalMs: 50 });
  const agentConfig = join(dir, 'agent.yaml');
  writeFileSync(
    agentConfig,
    JSON.stringify(
      withSettings(
        {
          id: `steady-${name}`,
          dataDir: join(dir, 'agent-data'),
          log: { level: 'warn' },
          inputs: [{ paths: [join(logs, '*.log')], topic }],
          transport: { nats: { servers: [nats.url] } },
          monitor: { listen: `127.0.0.1:${agentPort}` },
        },
        args.agent,
      ),
    ),
  );
  const agent = await spawnTracked(process.execPath, [...nodeArgs(dir, 'agent'), join(DIST, 'agent/cli.js'), 'run', '--config', agentConfig]);
  await waitFor(() => httpOk(`http://127.0.0.1:${agentPort}/readyz`), 60_000, 'ferry-agent /readyz', { intervalMs: 50 });
  return { gateway, agent, ports: [agentPort, port] };
}

async function startRsyslog(work: TempDir, kafka: KafkaBroker, logs: string, topic: string, name: string): Promise<Child> {
  const found = findRsyslogd();
  if ('missing' in found) throw new Error(found.missing);
  const dir = join(work.path, `rsyslog-${name}`);
  const conf = writeRsyslogConf(dir, { bootstrap: kafka.bootstrap, topic, logs, tag: 'steady' });
  return spawnTracked(found.path, ['-n', '-f', conf, '-i', join(dir, 'rsyslogd.pid')]);
}

async function runScenario(work: TempDir, kafka: KafkaBroker, nats: NatsServer, s: Scenario): Promise<Row[]> {
  const systems = ['ferry', 'rsyslog'] as const;
  const logs = Object.fromEntries(systems.map((sys) => [sys, join(work.path, `logs-${sys}-${s.name}`)])) as Record<(typeof systems)[number], string>;
  const paths: Record<string, string[]> = {};
  for (const sys of systems) {
    mkdirSync(logs[sys]);
    paths[sys] = Array.from({ length: s.files }, (_, f) => join(logs[sys], `app-${f}.log`));
    for (const p of paths[sys]) writeFileSync(p, '');
    await kafka.createTopic(`steady-${sys}-${s.name}`);
  }
  const { gateway, agent, ports } = await startFerry(work, kafka, nats, logs.ferry, `steady-ferry-${s.name}`, s.name);
  const rsyslogd = await startRsyslog(work, kafka, logs.rsyslog, `steady-rsyslog-${s.name}`, s.name);
  const procs = { 'ferry-agent': agent, 'ferry-gateway': gateway, rsyslogd };
  try {
    const measuredFromMs = performance.timeOrigin + performance.now() + WARMUP_S * 1000;
    const arrivals = { ferry: consume(kafka.bootstrap, `steady-ferry-${s.name}`, measuredFromMs), rsyslog: consume(kafka.bootstrap, `steady-rsyslog-${s.name}`, measuredFromMs) };
    const writers = { ferry: writer(paths.ferry!, s.rate, 'ferry'), rsyslog: writer(paths.rsyslog!, s.rate, 'rsyslog') };
    await new Promise((r) => setTimeout(r, WARMUP_S * 1000));
    const cpu0 = Object.fromEntries(Object.entries(procs).map(([n, c]) => [n, cpuSeconds(c.pid) ?? Number.NaN]));
    const t0 = performance.now();
    await new Promise((r) => setTimeout(r, SECONDS * 1000));
    const wallS = (performance.now() - t0) / 1000;
    const cpuPct = Object.fromEntries(Object.entries(procs).map(([n, c]) => [n, (100 * ((cpuSeconds(c.pid) ?? Number.NaN) - cpu0[n]!)) / wallS]));
    const written = { ferry: writers.ferry.stop(), rsyslog: writers.rsyslog.stop() };
    await waitFor(() => arrivals.ferry.received >= written.ferry && arrivals.rsyslog.received >= written.rsyslog, 15_000, 'every line in Kafka').catch(() => undefined);
    const rss = Object.fromEntries(Object.entries(procs).map(([n, c]) => [n, peakRssMiB(c.pid)]));
    console.log(`${s.name}: ferry inside: ${await ferryInside(...ports).catch((err: unknown) => `metrics not read (${String(err)})`)}; agent descriptors ${openFds(agent.pid)}`);
    for (const a of Object.values(arrivals)) a.child.kill('SIGTERM');
    return systems.map((sys) => {
      const a = arrivals[sys];
      const sorted = a.latenciesMs.sort((x, y) => x - y);
      const own = sys === 'ferry' ? ['ferry-agent', 'ferry-gateway'] : ['rsyslogd'];
      return {
        scenario: s.name,
        system: sys,
        cpuPct: Object.fromEntries(own.map((n) => [n, cpuPct[n]!])),
        rssMiB: Object.fromEntries(own.map((n) => [n, rss[n]])),
        written: written[sys],
        received: a.received,
        p50: percentile(sorted, 50),
        p99: percentile(sorted, 99),
        max: sorted[sorted.length - 1] ?? Number.NaN,
      };
    });
  } finally {
    for (const c of Object.values(procs)) await terminate(c, 'SIGTERM', 15_000);
    if (PROFILE) for (const name of ['agent', 'gateway']) console.log(`${s.name}: ${profileText(ferryDir(work, s.name), name)}`);
  }
}

async function main(): Promise<void> {
  if (!which('kcat')) throw new Error('kcat is needed to read the topics (apt-get install -y kcat)');
  const scenarios: Scenario[] = RATES.map((r) => ({ name: `${r}-lps`, files: 1, rate: r }));
  if (MANY_FILES > 0) scenarios.push({ name: `${MANY_FILES}-files-${MANY_RATE}-lps`, files: MANY_FILES, rate: MANY_RATE });
  console.log(`# node dist/bench/steady.js ${process.argv.slice(2).join(' ')}`.trim());
  console.log(`${SECONDS} s measured after ${WARMUP_S} s of warm-up per scenario; lines of ${LINE_BYTES} B; node ${process.version}; ${cpus().length} CPUs; load ${loadAverage()}`);
  const work = tempDir('bench-steady');
  const [kafka, nats] = await Promise.all([startKafka(), startNats()]);
  const rows: Row[] = [];
  try {
    for (const s of scenarios) {
      const before = loadAverage();
      const r = await runScenario(work, kafka, nats, s);
      console.log(`${s.name}: load before ${before}, after ${loadAverage()}`);
      rows.push(...r);
    }
  } finally {
    await nats.stop();
    await kafka.destroy();
    await work.cleanup();
  }
  const f = (n: number | undefined, d = 1): string => (n === undefined || !Number.isFinite(n) ? '-' : n.toFixed(d));
  console.log('');
  console.log('| scenario | system | CPU % of a core | peak RSS MiB | lines written / in Kafka | latency p50 / p99 / max ms |');
  console.log('|---|---|---|---|---|---|');
  for (const r of rows) {
    const cpu = Object.entries(r.cpuPct).map(([n, v]) => `${n} ${f(v)}`).join(' + ');
    const rss = Object.entries(r.rssMiB).map(([n, v]) => `${n} ${f(v, 0)}`).join(', ');
    console.log(`| ${r.scenario} | ${r.system} | ${cpu} | ${rss} | ${r.written} / ${r.received} | ${f(r.p50)} / ${f(r.p99)} / ${f(r.max)} |`);
  }
  console.log(`\nload average at the end ${loadAverage()}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
