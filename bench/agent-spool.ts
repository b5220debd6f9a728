// Micro-benchmark of the agent's read path: files of 200-byte lines tailed into the SQLite
// spool (tailer + chunker + encode + one transaction per chunk). Measured, not asserted.
//
//   npm run build && node dist/bench/agent-spool.js [--lines 600000] [--files 1] [--sync normal|full] [--chunk-bytes 262144] [--runs 3]
//
// For each run: a fresh temp dir, files written beforehand (catch-up throughput), a fresh
// spool; the clock runs from tailer.start() until the spool holds every line. Prints one JSON
// line per run and the medians.
import { appendFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { setTimeout as sleep } from 'node:timers/promises';
import { agentConfigSchema } from '../agent/config.js';
import { Spool } from '../agent/spool/spool.js';
import { Tailer } from '../agent/sources/tail/tailer.js';
import { silentLogger } from '../shared/log.js';
import { Registry } from '../shared/metrics.js';

const { values: args } = parseArgs({
  options: {
    lines: { type: 'string', default: '600000' },
    files: { type: 'string', default: '1' },
    sync: { type: 'string', default: 'normal' },
    'chunk-bytes': { type: 'string', default: String(256 * 1024) },
    runs: { type: 'string', default: '3' },
  },
});
const LINES = Number(args.lines);
const FILES = Number(args.files);
const RUNS = Number(args.runs);
const SYNC = args.sync === 'full' ? 'full' : 'normal';
const CHUNK = Number(args['chunk-bytes']);

function line(i: number): string {
  const head = `${new Date(1_700_000_000_000 + i).toISOString()} INFO req=${i} `;
  return head + 'x'.repeat(199 - head.length) + '\n';
}

function writeFiles(dir: string): number {
  let bytes = 0;
  const per = Math.ceil(LINES / FILES);
  for (let f = 0; f < FILES; f++) {
    let batch = '';
    const path = join(dir, `bench-${f}.log`);
    for (let i = f * per; i < Math.min(LINES, (f + 1) * per); i++) {
      batch += line(i);
      if (batch.length > 1 << 20) {
        appendFileSync(path, batch);
        batch = '';
      }
    }
    if (batch) appendFileSync(path, batch);
    bytes += statSync(path).size;
  }
  return bytes;
}

async function linesRead(registry: Registry): Promise<number> {
  const m = (await registry.getSingleMetric('ferry_agent_lines_read_total')?.get())?.values[0]?.value;
  return m ?? 0;
}

async function run(): Promise<Record<string, number>> {
  const root = mkdtempSync(join(tmpdir(), 'ferry-bench-spool-'));
  try {
    const logs = join(root, 'logs');
    mkdirSync(logs);
    const bytes = writeFiles(logs);
    const config = agentConfigSchema.parse({
      id: 'bench',
      dataDir: join(root, 'data'),
      inputs: [{ paths: [join(logs, '*.log')], topic: 'bench' }],
      transport: { http: { url: 'http://127.0.0.1:9' } },
      chunk: { maxBytes: CHUNK, maxDelayMs: 200 },
      spool: { maxBytes: 8 * 1024 ** 3, synchronous: SYNC },
    });
    const registry = new Registry();
    const spool = Spool.open({ dataDir: config.dataDir, maxBytes: config.spool.maxBytes, onFull: 'pause', synchronous: SYNC, log: silentLogger(), registry });
    const tailer = new Tailer({ config, spool, log: silentLogger(), registry });
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    let rssMax = 0;
    await tailer.start();
    while ((await linesRead(registry)) < LINES) {
      rssMax = Math.max(rssMax, process.memoryUsage().rss);
      await sleep(5);
    }
    const secs = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    const st = spool.stats();
    await tailer.stop(Date.now() + 5000);
    spool.close();
    return {
      lines: LINES,
      files: FILES,
      seconds: +secs.toFixed(3),
      linesPerSec: Math.round(LINES / secs),
      mbPerSec: +(bytes / 1e6 / secs).toFixed(1),
      cpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(2),
      chunks: st.chunks,
      spoolMB: +(st.bytes / 1e6).toFixed(1),
      rssMB: Math.round(rssMax / 1e6),
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

const results: Array<Record<string, number>> = [];
for (let i = 0; i < RUNS; i++) {
  const r = await run();
  results.push(r);
  console.log(JSON.stringify({ run: i + 1, sync: SYNC, chunkBytes: CHUNK, ...r }));
}
const median = (k: string): number => {
  const v = results.map((r) => r[k]!).sort((a, b) => a - b);
  return v[Math.floor(v.length / 2)]!;
};
console.log(JSON.stringify({ median: true, sync: SYNC, chunkBytes: CHUNK, lines: LINES, files: FILES, linesPerSec: median('linesPerSec'), mbPerSec: median('mbPerSec'), cpuSeconds: median('cpuSeconds'), rssMB: median('rssMB') }));
