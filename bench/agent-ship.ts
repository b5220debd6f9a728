// Benchmark of ferry-agent's read and ship path, measured on the built CLI as a separate process
// against a real nats-server with JetStream (file storage).
//
//   npm run build && node dist/bench/agent-ship.js [--lines 600000] [--line-bytes 200]
//
// Three runs on the same file of N lines of `line-bytes` bytes (newline included):
//   spool:    NATS unreachable: file -> spool only (tail, cut chunks, SQLite commits)
//   drain:    the same data dir restarted with NATS reachable: spool -> JetStream only
//   pipeline: a fresh data dir with NATS reachable: file -> spool -> JetStream at once
// For each: wall time from process spawn to done (offset at the file's end and/or spool empty),
// lines/s and MB/s over that time, the agent process's CPU seconds (utime+stime from /proc) and
// peak RSS (VmHWM), read just before it is stopped. Figures are printed, not asserted.
import { openSync, writeSync, closeSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstreamManager } from '@nats-io/jetstream';
import { startNats, tempDir, waitFor, freePort } from '../test/harness/index.js';
import { spawnTracked, terminate, type Child } from '../test/harness/process.js';
import type { StatusReport } from '../agent/status.js';

const CLI = fileURLToPath(new URL('../agent/cli.js', import.meta.url));
const { values } = parseArgs({ options: { lines: { type: 'string', default: '600000' }, 'line-bytes': { type: 'string', default: '200' } } });
const LINES = Number(values.lines);
const LINE_BYTES = Number(values['line-bytes']);

function makeFile(path: string): number {
  const fd = openSync(path, 'w');
  const batch = 10_000;
  const filler = 'x'.repeat(LINE_BYTES);
  for (let i = 0; i < LINES; i += batch) {
    const parts: string[] = [];
    for (let j = i; j < Math.min(LINES, i + batch); j++) {
      const head = `${new Date(1_700_000_000_000 + j).toISOString()} INFO id=${j} `;
      parts.push((head + filler).slice(0, LINE_BYTES - 1));
    }
    writeSync(fd, parts.join('\n') + '\n');
  }
  closeSync(fd);
  return statSync(path).size;
}

function procStats(pid: number): { cpuS: number; peakRssMiB: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(fields[11]) + Number(fields[12]); // utime, stime (fields 14 and 15)
  const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return { cpuS: ticks / 100, peakRssMiB: Number(hwm?.[1] ?? 0) / 1024 };
}

function config(dir: string, logs: string, natsUrl: string, monitorPort: number, agentId = 'bench-01'): string {
  const file = join(dir, `agent-${monitorPort}.yaml`);
  writeFileSync(
    file,
    `id: ${agentId}
dataDir: ${join(dir, 'data')}
log: { level: warn }
inputs:
  - paths: ["${logs}/*.log"]
    topic: bench
transport:
  nats:
    servers: ["${natsUrl}"]
spool:
  maxBytes: 4GiB
monitor:
  listen: "127.0.0.1:${monitorPort}"
shutdownTimeoutMs: 10000
`,
  );
  return file;
}

async function status(port: number): Promise<StatusReport | null> {
  try {
    const res = await fetch(`http://127.0.0.1:${port}/status`);
    return res.ok ? ((await res.json()) as StatusReport) : null;
  } catch {
    return null;
  }
}

interface Result {
  name: string;
  wallS: number;
  /** from the first /status answer (process started, spool open) to done */
  runS: number;
  cpuS: number;
  peakRssMiB: number;
}

async function runAgent(name: string, cfg: string, port: number, done: (s: StatusReport) => boolean): Promise<Result> {
  const t0 = process.hrtime.bigint();
  const agent: Child = await spawnTracked(process.execPath, [CLI, 'run', '--config', cfg]);
  let ready: bigint | undefined;
  try {
    await waitFor(async () => {
      const s = await status(port);
      if (s !== null) ready ??= process.hrtime.bigint();
      return s !== null && done(s);
    }, 600_000, `${name} to finish (agent output:\n${agent.output.text(10)})`, { intervalMs: 20, maxIntervalMs: 50 });
    const end = process.hrtime.bigint();
    const wallS = Number(end - t0) / 1e9;
    const runS = Number(end - (ready ?? t0)) / 1e9;
    const p = procStats(agent.pid);
    return { name, wallS, runS, ...p };
  } finally {
    const killed = await terminate(agent, 'SIGTERM', 15_000);
    if (killed) console.error(`${name}: the agent did not stop within 15 s of SIGTERM`);
  }
}

async function main(): Promise<void> {
  const dir = tempDir('bench-agent');
  const nats = await startNats();
  try {
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'FERRY_BENCH', subjects: ['ferry.chunks.>'], max_bytes: -1 });
    const logs = join(dir.path, 'logs');
    mkdirSync(logs);
    const size = makeFile(join(logs, 'bench.log'));
    const mb = size / 1e6;
    console.log(`file: ${LINES} lines x ${LINE_BYTES} B = ${mb.toFixed(1)} MB; nats-server ${nats.binary.version}; node ${process.version}`);

    const results: Result[] = [];
    const atEnd = (s: StatusReport): boolean => s.files.length > 0 && s.files.every((f) => f.offset >= size);
    const empty = (s: StatusReport): boolean => s.spool.chunks === 0;

    // 1. spool only: nothing listens on the NATS port
    const deadPort = await freePort();
    const spoolDir = join(dir.path, 'a');
    mkdirSync(spoolDir);
    const p1 = await freePort();
    results.push(await runAgent('spool (file -> SQLite)', config(spoolDir, logs, `nats://127.0.0.1:${deadPort}`, p1), p1, atEnd));
    // 2. drain: same data dir, NATS reachable
    const p2 = await freePort();
    results.push(await runAgent('drain (SQLite -> JetStream)', config(spoolDir, logs, nats.url, p2), p2, (s) => atEnd(s) && empty(s)));
    const afterDrain = await jsm.streams.info('FERRY_BENCH');
    // 3. pipeline: fresh data dir
    const pipeDir = join(dir.path, 'b');
    mkdirSync(pipeDir);
    await jsm.streams.purge('FERRY_BENCH');
    const p3 = await freePort();
    // another agent id: a fresh spool starts at seq 1 again, and JetStream would drop bench-01/1.. as duplicates
    results.push(await runAgent('pipeline (file -> JetStream)', config(pipeDir, logs, nats.url, p3, 'bench-02'), p3, (s) => atEnd(s) && empty(s)));
    const afterPipe = await jsm.streams.info('FERRY_BENCH');
    await nc.close();

    console.log(`JetStream after drain: ${afterDrain.state.messages} chunks, ${(afterDrain.state.bytes / 1e6).toFixed(1)} MB; after pipeline: ${afterPipe.state.messages} chunks`);
    console.log('| run | wall s (from spawn) | lines/s | MB/s | s after ready | lines/s after ready | agent CPU s | CPU µs/line | peak RSS MiB |');
    console.log('|---|---|---|---|---|---|---|---|---|');
    for (const r of results) {
      console.log(
        `| ${r.name} | ${r.wallS.toFixed(2)} | ${Math.round(LINES / r.wallS).toLocaleString('en-US')} | ${(mb / r.wallS).toFixed(1)} | ${r.runS.toFixed(2)} | ` +
          `${Math.round(LINES / r.runS).toLocaleString('en-US')} | ${r.cpuS.toFixed(2)} | ${((r.cpuS * 1e6) / LINES).toFixed(1)} | ${r.peakRssMiB.toFixed(0)} |`,
      );
    }
    console.log('"ready" = the monitor first answered /status (node started, config loaded, spool open, tailer started); status is polled every 20-50 ms.');
  } finally {
    await nats.stop();
    await dir.cleanup();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
