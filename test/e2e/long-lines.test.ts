// Long lines through the whole pipeline with real processes and default settings everywhere
// (agent, nats-server, gateway, Kafka broker): files -> ferry-agent -> NATS JetStream ->
// ferry-gateway -> Kafka. A 1.5 MB and a 1.02 MB line between ordinary lines: every byte
// arrives, the pieces (ferry.flags "split") join back to the lines written.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { startNats, startKafka, waitFor, httpOk, tempDir, freePort, type NatsServer, type KafkaBroker, type KafkaRecordOut, type TempDir } from '../harness/index.js';

const root = resolve(import.meta.dirname, '..', '..', '..');
const CLI = { agent: join(root, 'dist/agent/cli.js'), gateway: join(root, 'dist/gateway/cli.js') };

interface Proc {
  child: ChildProcess;
  exited: Promise<number | null>;
  logFile: string;
}

function spawnCli(program: keyof typeof CLI, config: string, logFile: string): Proc {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [CLI[program], 'run', '--config', config], { stdio: ['ignore', fd, fd], env: { ...process.env, FERRY_LOG_LEVEL: 'info' } });
  closeSync(fd);
  const exited = new Promise<number | null>((res) => child.once('exit', (code) => res(code)));
  return { child, exited, logFile };
}

function tail(file: string, lines = 30): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

async function stop(p: Proc | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null || p.child.signalCode !== null) return;
  p.child.kill('SIGKILL');
  await p.exited;
}

function longLine(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = 0x61 + ((i * 7 + seed) % 26);
  return b;
}

/** Records in file order (by ferry.offset), joined into lines: a record flagged "split" continues in the next. */
function joinLines(records: readonly KafkaRecordOut[]): Buffer[] {
  const sorted = [...records].sort((a, b) => Number(a.headers['ferry.offset']) - Number(b.headers['ferry.offset']));
  const lines: Buffer[] = [];
  let open: Buffer[] = [];
  for (const r of sorted) {
    open.push(r.value);
    if ((r.headers['ferry.flags'] ?? '').split(',').includes('split')) continue;
    lines.push(Buffer.concat(open));
    open = [];
  }
  if (open.length > 0) lines.push(Buffer.concat(open));
  return lines;
}

describe('long lines through agent -> JetStream -> gateway -> Kafka, default settings', { timeout: 300_000 }, () => {
  let nats: NatsServer;
  let kafka: KafkaBroker;
  let dir: TempDir;
  let gateway: Proc | undefined;
  let agent: Proc | undefined;

  before(async () => {
    dir = tempDir('ferry-long-lines-');
    [nats, kafka] = await Promise.all([startNats(), startKafka()]);
    const port = await freePort();
    const gatewayConfig = join(dir.path, 'gateway.yaml');
    writeFileSync(gatewayConfig, JSON.stringify({ id: 'gw-long', kafka: { brokers: kafka.brokers }, nats: { servers: [nats.url] }, monitor: { listen: `127.0.0.1:${port}` } }));
    gateway = spawnCli('gateway', gatewayConfig, join(dir.path, 'gateway.log'));
    const g = gateway;
    await waitFor(
      async () => {
        if (g.child.exitCode !== null) throw new Error(`gateway exited with ${g.child.exitCode}:\n${tail(g.logFile)}`);
        return httpOk(`http://127.0.0.1:${port}/readyz`);
      },
      60_000,
      'ferry-gateway /readyz',
    );
  });

  after(async () => {
    await stop(agent);
    await stop(gateway);
    await kafka?.destroy();
    await nats?.stop();
    await dir?.cleanup();
  });

  it('delivers every byte of a 1.5 MB and a 1.02 MB line between ordinary lines; the pieces join back to the lines', async () => {
    await kafka.createTopic('long-lines');
    const logs = join(dir.path, 'logs');
    mkdirSync(logs);
    const written = [
      ...Array.from({ length: 20 }, (_, i) => Buffer.from(`before ${i}`)),
      longLine(1_500_000, 1),
      ...Array.from({ length: 20 }, (_, i) => Buffer.from(`between ${i}`)),
      longLine(1_020_000, 2),
      ...Array.from({ length: 20 }, (_, i) => Buffer.from(`after ${i}`)),
    ];
    writeFileSync(join(logs, 'app.log'), Buffer.concat(written.flatMap((l) => [l, Buffer.from('\n')])));
    const agentConfig = join(dir.path, 'agent.yaml');
    // Default settings but for the data dir, the input, the transport and a disabled monitor.
    writeFileSync(agentConfig, JSON.stringify({ id: 'long-01', dataDir: join(dir.path, 'data'), inputs: [{ paths: [join(logs, '*.log')], topic: 'long-lines' }], transport: { nats: { servers: [nats.url] } }, monitor: { enabled: false } }));
    agent = spawnCli('agent', agentConfig, join(dir.path, 'agent.log'));
    const longBytes = 1_500_000 + 1_020_000;
    let records: KafkaRecordOut[] = [];
    try {
      records = await waitFor(
        async () => {
          const all = await kafka.readAll('long-lines', { timeoutMs: 5000 });
          const bytes = all.reduce((n, r) => n + r.value.length, 0) - written.slice(0, 20).concat(written.slice(21, 41), written.slice(42)).reduce((n, l) => n + l.length, 0);
          return bytes >= longBytes && all.length >= 62 ? all : undefined;
        },
        120_000,
        'every byte of the long lines in Kafka',
        { intervalMs: 1000, maxIntervalMs: 3000 },
      );
    } catch (err) {
      const got = await kafka.readAll('long-lines', { timeoutMs: 5000 }).catch(() => []);
      const longGot = got.filter((r) => r.value.length > 100).reduce((n, r) => n + r.value.length, 0);
      throw new Error(`${(err as Error).message}: ${got.length} records, ${longGot} of ${longBytes} long-line bytes\n--- agent ---\n${tail(join(dir.path, 'agent.log'))}\n--- gateway ---\n${tail(join(dir.path, 'gateway.log'))}`, { cause: err });
    }
    const lines = joinLines(records);
    assert.equal(lines.length, written.length, 'as many lines as written');
    lines.forEach((l, i) => assert.ok(l.equals(written[i]!), `line ${i} (${written[i]!.length} bytes) arrived as ${l.length} different bytes`));
    for (const r of records) assert.ok(r.value.length < 1024 * 1024, `a record of ${r.value.length} bytes`);
  });
});
