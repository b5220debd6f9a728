// The built ferry-agent CLI as operators run it: a real process, a real nats-server with
// JetStream, temp files. Lines are identified by ids so that loss and duplication show.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFileSync, writeFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import type { NatsConnection } from '@nats-io/transport-node';
import type { JetStreamManager } from '@nats-io/jetstream';
import { tempDir, waitFor, freePort, type NatsServer, type TempDir } from '../harness/index.js';
import { spawnTracked, terminate, keepAlive, type Child } from '../harness/process.js';
import { parseHeartbeat, type Heartbeat } from '../../shared/protocol.js';
import { agentStatus, lineIdsInStream, startChunkStream, type ChunkStream } from './agent-fixture.js';

const CLI = fileURLToPath(new URL('../../agent/cli.js', import.meta.url));
const run = promisify(execFile);

interface Setup {
  dir: TempDir;
  config: string;
  logs: string;
  monitorPort: number;
  agentId: string;
}

async function setup(nats: NatsServer, agentId: string, extra = ''): Promise<Setup> {
  const dir = tempDir(`e2e-${agentId}`);
  const logs = join(dir.path, 'logs');
  const monitorPort = await freePort();
  const config = join(dir.path, 'agent.yaml');
  writeConfig(config, { agentId, dataDir: join(dir.path, 'data'), logs, natsUrl: nats.url, monitorPort, extra });
  await import('node:fs/promises').then((fs) => fs.mkdir(logs, { recursive: true }));
  return { dir, config, logs, monitorPort, agentId };
}

function writeConfig(file: string, o: { agentId: string; dataDir: string; logs: string; natsUrl: string; monitorPort: number; extra: string; inputs?: string; monitor?: string }): void {
  writeFileSync(
    file,
    `id: ${o.agentId}
dataDir: ${o.dataDir}
inputs:
${o.inputs ?? `  - paths: ["${o.logs}/*.log"]
    topic: app`}
transport:
  nats:
    servers: ["${o.natsUrl}"]
    publishTimeoutMs: 3000
chunk:
  maxDelayMs: 50
  maxBytes: 64KiB
tail:
  pollIntervalMs: 50
  scanIntervalMs: 200
retry:
  initialMs: 50
  maxMs: 1000
heartbeatIntervalMs: 500
${o.monitor ?? `monitor:\n  listen: "127.0.0.1:${o.monitorPort}"`}
shutdownTimeoutMs: 5000
${o.extra}`,
  );
}

function startAgent(s: Setup): Promise<Child> {
  return spawnTracked(process.execPath, ['--enable-source-maps', CLI, 'run', '--config', s.config], { env: { ...process.env, FERRY_LOG_LEVEL: 'info' } });
}

function line(id: number): string {
  return `id=${String(id).padStart(7, '0')} ${'x'.repeat(60)}`;
}

describe('ferry-agent run (e2e, real NATS)', () => {
  let stream: ChunkStream;
  let nats: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  before(async () => {
    stream = await startChunkStream();
    ({ nats, nc, jsm } = stream);
  });

  after(async () => {
    await stream?.close();
  });

  const idsInStream = lineIdsInStream;
  const status = (s: Setup): ReturnType<typeof agentStatus> => agentStatus(s.config);

  it('ships written lines to JetStream, shows offsets and spool in status --json while running, and exits 0 soon after SIGTERM', async () => {
    const s = await setup(nats, 'e2e-basic');
    const file = join(s.logs, 'app.log');
    appendFileSync(file, Array.from({ length: 500 }, (_, i) => line(i + 1) + '\n').join(''));
    const heartbeats: Heartbeat[] = [];
    const sub = nc.subscribe(`ferry.heartbeats.${s.agentId}`, {
      callback: (_err, msg) => {
        const hb = parseHeartbeat(msg.json());
        if (hb) heartbeats.push(hb);
      },
    });
    const agent = await startAgent(s);
    try {
      appendFileSync(file, Array.from({ length: 500 }, (_, i) => line(i + 501) + '\n').join(''));
      const ids = await waitFor(async () => {
        const got = await idsInStream(jsm, s.agentId);
        return got.length >= 1000 ? got : null;
      }, 20_000, `1000 lines in the stream (agent output:\n${agent.output.text(20)})`);
      assert.deepEqual(ids, Array.from({ length: 1000 }, (_, i) => i + 1), 'lines missing, duplicated or out of order');

      const ready = await fetch(`http://127.0.0.1:${s.monitorPort}/readyz`);
      assert.equal(ready.status, 200);
      const metrics = await (await fetch(`http://127.0.0.1:${s.monitorPort}/metrics`)).text();
      assert.match(metrics, /^ferry_ship_lines_total 1000$/m);
      assert.match(metrics, /^ferry_transport_connected 1$/m);

      const size = statSync(file).size;
      const live = await waitFor(async () => {
        const r = await status(s);
        return r.report.files[0]?.offset === size && r.report.spool.chunks === 0 ? r : null;
      }, 10_000, 'status to show the file read to its end and an empty spool');
      assert.equal(live.code, 0);
      assert.equal(live.report.running, true);
      assert.equal(live.report.source, 'agent');
      assert.equal(live.report.transport.state, 'connected');
      assert.equal(live.report.files[0]!.path, file);
      assert.equal(live.report.files[0]!.lagBytes, 0);
      assert.ok(live.report.lastShipAtMs !== null);

      await waitFor(() => heartbeats.some((h) => h.lastShipAtMs !== null), 5000, 'a heartbeat on ferry.heartbeats.<agentId> after the first ship');
      const hb = heartbeats.at(-1)!;
      assert.equal(hb.agentId, s.agentId);
      assert.equal(hb.transport, 'nats');
      assert.equal(hb.files, 1);

      const t0 = Date.now();
      agent.process.kill('SIGTERM');
      const exit = await keepAlive(agent.exited);
      assert.deepEqual(exit, { code: 0, signal: null }, `agent output:\n${agent.output.text(20)}`);
      assert.ok(Date.now() - t0 < 5000, `took ${Date.now() - t0} ms to stop (shutdownTimeoutMs 5000)`);

      const after = await status(s);
      assert.equal(after.code, 3, 'status must exit 3 when the agent is not running');
      assert.equal(after.report.running, false);
      assert.equal(after.report.source, 'spool');
      assert.equal(after.report.files[0]!.offset, size);
      assert.ok(after.report.lastShipAtMs !== null, 'the last ship time must survive the stop');
    } finally {
      sub.unsubscribe();
      await terminate(agent, 'SIGKILL', 0);
      await s.dir.cleanup();
    }
  });

  it('status reads the spool and the pid file when the monitor is off, and says the agent runs', async () => {
    const s = await setup(nats, 'e2e-nomon');
    writeConfig(s.config, { agentId: s.agentId, dataDir: join(s.dir.path, 'data'), logs: s.logs, natsUrl: nats.url, monitorPort: s.monitorPort, extra: '', monitor: 'monitor:\n  enabled: false' });
    const file = join(s.logs, 'app.log');
    appendFileSync(file, Array.from({ length: 100 }, (_, i) => line(i + 1) + '\n').join(''));
    const agent = await startAgent(s);
    try {
      const size = statSync(file).size;
      const r = await waitFor(async () => {
        const st = await status(s);
        return st.report.files[0]?.offset === size && st.report.lastShipAtMs !== null ? st : null;
      }, 15_000, `status to show the file read and a ship recorded (agent output:\n${agent.output.text(10)})`);
      assert.equal(r.code, 0);
      assert.equal(r.report.running, true);
      assert.equal(r.report.source, 'spool');
      assert.equal(r.report.pid, agent.pid);
      assert.equal(r.report.files[0]!.lagBytes, 0);
      assert.match(r.report.transport.detail, /connected/);
    } finally {
      await terminate(agent, 'SIGTERM', 5000);
      await s.dir.cleanup();
    }
  });

  it('delivers every line exactly once after kill -9 mid-write and a restart', async (t) => {
    const s = await setup(nats, 'e2e-crash');
    const file = join(s.logs, 'app.log');
    const total = 30_000;
    let written = 0;
    const writeBatch = (n: number): void => {
      const lines: string[] = [];
      for (let i = 0; i < n && written < total; i++) lines.push(line(++written));
      appendFileSync(file, lines.map((l) => l + '\n').join(''));
    };
    let agent = await startAgent(s);
    try {
      await waitFor(async () => (await fetch(`http://127.0.0.1:${s.monitorPort}/readyz`)).ok, 10_000, 'the agent to be ready');
      // a writer keeps appending while the agent is killed
      let writing = true;
      const writer = (async () => {
        while (writing && written < total / 2) {
          writeBatch(200);
          await new Promise((r) => setTimeout(r, 2));
        }
      })();
      await waitFor(() => written >= total / 6, 10_000, 'the writer to get going');
      await waitFor(async () => /^ferry_ship_chunks_acked_total [1-9]/m.test(await (await fetch(`http://127.0.0.1:${s.monitorPort}/metrics`)).text()), 10_000, 'the first chunks to ship');
      await terminate(agent, 'SIGKILL', 0);
      const atKill = { written, shipped: (await idsInStream(jsm, s.agentId)).length };
      writing = false;
      await writer;
      t.diagnostic(`killed with ${atKill.shipped} of ${atKill.written} written lines in the stream`);
      writeBatch(2000); // written while the agent is down
      agent = await startAgent(s);
      while (written < total) {
        writeBatch(500);
        await new Promise((r) => setImmediate(r));
      }
      const ids = await waitFor(async () => {
        const got = await idsInStream(jsm, s.agentId);
        return new Set(got).size >= total ? got : null;
      }, 60_000, `all ${total} lines in the stream (agent output:\n${agent.output.text(20)})`);
      const counts = new Map<number, number>();
      for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
      const dups = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
      assert.equal(dups.length, 0, `duplicated line ids: ${dups.slice(0, 10).join(', ')}`);
      assert.equal(ids.length, total);
      for (let i = 1; i <= total; i++) assert.equal(counts.get(i), 1, `line ${i} missing`);
    } finally {
      await terminate(agent, 'SIGKILL', 0);
      await s.dir.cleanup();
    }
  });

  it('reloads its inputs on SIGHUP and keeps the running config when the new file is invalid', async () => {
    const s = await setup(nats, 'e2e-reload');
    const other = join(s.dir.path, 'other');
    await import('node:fs/promises').then((fs) => fs.mkdir(other));
    appendFileSync(join(s.logs, 'a.log'), line(1) + '\n');
    appendFileSync(join(other, 'b.log'), line(2) + '\n');
    const agent = await startAgent(s);
    try {
      await waitFor(async () => (await idsInStream(jsm, s.agentId)).includes(1), 10_000, 'line 1');
      const base = { agentId: s.agentId, dataDir: join(s.dir.path, 'data'), logs: s.logs, natsUrl: nats.url, monitorPort: s.monitorPort, extra: '' };
      // an invalid file: the agent logs it and keeps shipping with the old inputs
      writeFileSync(s.config, 'inputs: 12\n');
      agent.process.kill('SIGHUP');
      await waitFor(() => /config reload failed/.test(agent.output.text(50)), 5000, 'the reload error in the log');
      appendFileSync(join(s.logs, 'a.log'), line(3) + '\n');
      await waitFor(async () => (await idsInStream(jsm, s.agentId)).includes(3), 10_000, 'line 3 after the failed reload');
      writeConfig(s.config, { ...base, inputs: `  - paths: ["${s.logs}/*.log", "${other}/*.log"]\n    topic: app` });
      agent.process.kill('SIGHUP');
      await waitFor(async () => (await idsInStream(jsm, s.agentId)).includes(2), 10_000, `line 2 from the added input (agent output:\n${agent.output.text(10)})`);
      assert.equal(agent.running(), true);
    } finally {
      await terminate(agent, 'SIGTERM', 5000);
      await s.dir.cleanup();
    }
  });

  it('refuses to start, naming the key, when the data dir is not writable or the config is invalid', async () => {
    const s = await setup(nats, 'e2e-fail', '');
    try {
      writeConfig(s.config, { agentId: 'e2e-fail', dataDir: '/etc/passwd/ferry', logs: s.logs, natsUrl: nats.url, monitorPort: s.monitorPort, extra: '' });
      const bad = await run(process.execPath, [CLI, 'run', '--config', s.config]).then(
        () => null,
        (e: { code: number; stderr: string }) => e,
      );
      assert.ok(bad, 'run should have failed');
      assert.equal(bad.code, 1);
      assert.match(bad.stderr, /dataDir: \/etc\/passwd\/ferry is not a writable directory/);

      writeFileSync(s.config, `inputs: []\ntransport: { nats: { servers: ["${nats.url}"] } }\nretry: { initialMs: -1 }\n`);
      const invalid = await run(process.execPath, [CLI, 'run', '--config', s.config]).then(
        () => null,
        (e: { code: number; stderr: string }) => e,
      );
      assert.ok(invalid, 'run should have failed');
      assert.equal(invalid.code, 1);
      assert.match(invalid.stderr, /FERRY_CONFIG_INVALID/);
      assert.match(invalid.stderr, /retry\.initialMs/);
      assert.match(invalid.stderr, /inputs/);
    } finally {
      await s.dir.cleanup();
    }
  });
});
