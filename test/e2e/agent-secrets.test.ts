// Server URLs carrying `user:pass@` never leave the agent: the built ferry-agent CLI runs against
// a real nats-server (and an unreachable HTTP gateway) with credentials in its URLs, through a
// NATS outage; its whole log (debug level), /status, /readyz, /metrics, `status` (live and from
// the spool), `check` and the spool's meta table are searched for the password.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, closeSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import BetterSqlite3 from 'better-sqlite3';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startNats, tempDir, waitFor, freePort, type NatsServer, type TempDir } from '../harness/index.js';

const CLI = fileURLToPath(new URL('../../agent/cli.js', import.meta.url));
const SECRET = 's3cretPW42';

/** Runs a CLI command; resolves with everything it printed, whatever its exit code. */
function cli(args: string[]): Promise<string> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { timeout: 20_000 }, (_err, stdout, stderr) => resolve(`${stdout}\n${stderr}`));
  });
}

function spawnAgent(config: string, logFile: string): { child: ChildProcess; exited: Promise<number | null> } {
  const fd = openSync(logFile, 'a');
  const child = spawn(process.execPath, [CLI, 'run', '--config', config], { stdio: ['ignore', fd, fd], env: { ...process.env, FERRY_LOG_LEVEL: 'debug' } });
  closeSync(fd);
  return { child, exited: new Promise((res) => child.once('exit', (code) => res(code))) };
}

function spoolMeta(dataDir: string): string {
  const db = new BetterSqlite3(join(dataDir, 'spool.db'), { readonly: true, fileMustExist: true });
  try {
    return JSON.stringify(db.prepare('SELECT * FROM spool_meta').all());
  } finally {
    db.close();
  }
}

async function get(url: string): Promise<string> {
  const res = await fetch(url);
  return `${res.status} ${await res.text()}`;
}

describe('ferry-agent keeps URL credentials to itself', { timeout: 180_000 }, () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let dir: TempDir;

  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 200 });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'FERRY_CHUNKS', subjects: ['ferry.chunks.>'] });
    dir = tempDir('e2e-secrets');
  });

  after(async () => {
    await nc?.close();
    await nats?.stop();
    await dir?.cleanup();
  });

  async function setup(name: string, transport: string): Promise<{ config: string; data: string; logs: string; logFile: string; monitor: string }> {
    const base = join(dir.path, name);
    const logs = join(base, 'logs');
    mkdirSync(logs, { recursive: true });
    const port = await freePort();
    const config = join(base, 'agent.yaml');
    const data = join(base, 'data');
    writeFileSync(
      config,
      [
        `id: ${name}`,
        `dataDir: ${data}`,
        'inputs:',
        `  - paths: ["${logs}/*.log"]`,
        '    topic: app',
        'transport:',
        transport,
        'chunk:',
        '  maxDelayMs: 50',
        'retry:',
        '  initialMs: 50',
        '  maxMs: 500',
        'heartbeatIntervalMs: 300',
        'monitor:',
        `  listen: "127.0.0.1:${port}"`,
        'shutdownTimeoutMs: 5000',
        '',
      ].join('\n'),
    );
    return { config, data, logs, logFile: join(base, 'agent.log'), monitor: `http://127.0.0.1:${port}` };
  }

  it('over NATS: nothing the agent writes, serves or stores holds the password, connected or not', async () => {
    const url = `nats://ferry:${SECRET}@127.0.0.1:${nats.port}`;
    const s = await setup('sec-nats', `  nats:\n    servers: ["${url}"]\n    publishTimeoutMs: 2000`);
    const seen: string[] = [];
    const look = async (): Promise<void> => {
      seen.push(await get(`${s.monitor}/status`), await get(`${s.monitor}/readyz`), await get(`${s.monitor}/metrics`));
      seen.push(await cli(['status', '--config', s.config]), await cli(['status', '--config', s.config, '--json']));
    };
    const agent = spawnAgent(s.config, s.logFile);
    try {
      appendFileSync(join(s.logs, 'app.log'), 'hello\n');
      await waitFor(async () => (await jsm.streams.info('FERRY_CHUNKS')).state.messages >= 1, 20_000, 'the line in JetStream');
      await look();
      await nats.kill();
      const down = await waitFor(async () => {
        const st = await get(`${s.monitor}/status`);
        return /"state": "disconnected"/.test(st) ? st : undefined;
      }, 20_000, 'the agent to see NATS down');
      assert.ok(!down.includes(SECRET), `the password is in /status:\n${down}`);
      assert.match(down, /\*\*\*@127\.0\.0\.1/, 'the status names the server, without its credentials');
      appendFileSync(join(s.logs, 'app.log'), 'while down\n');
      await new Promise((r) => setTimeout(r, 1500)); // a few failed reconnects and publishes get logged
      await look();
      await nats.restart();
      await waitFor(async () => /"state": "connected"/.test(await get(`${s.monitor}/status`)), 20_000, 'the agent to reconnect');
      agent.child.kill('SIGTERM');
      assert.equal(await agent.exited, 0);
      seen.push(await cli(['status', '--config', s.config]), await cli(['status', '--config', s.config, '--json']));
      seen.push(await cli(['check', '--config', s.config]), await cli(['check', '--config', s.config, '--json']));
      seen.push(spoolMeta(s.data));
      seen.push(readFileSync(s.logFile, 'utf8'));
      const all = seen.join('\n');
      assert.match(all, /ferry-agent stopped/, 'the log was read');
      assert.ok(!all.includes(SECRET), `the password leaked:\n${all.split('\n').filter((l) => l.includes(SECRET)).slice(0, 5).join('\n')}`);
    } finally {
      if (agent.child.exitCode === null) agent.child.kill('SIGKILL');
    }
  });

  it('over HTTP: the gateway URL\'s credentials appear nowhere either', async () => {
    const port = await freePort(); // nothing listens: every request fails
    const s = await setup('sec-http', `  http:\n    url: "http://ferry:${SECRET}@127.0.0.1:${port}"`);
    const agent = spawnAgent(s.config, s.logFile);
    try {
      appendFileSync(join(s.logs, 'app.log'), 'hello\n');
      const st = await waitFor(async () => {
        const r = await get(`${s.monitor}/status`);
        return /unreachable/.test(r) ? r : undefined;
      }, 20_000, 'the agent to find the gateway unreachable');
      const seen = [st, await get(`${s.monitor}/readyz`), await cli(['status', '--config', s.config]), await cli(['check', '--config', s.config, '--json'])];
      agent.child.kill('SIGTERM');
      assert.equal(await agent.exited, 0);
      seen.push(await cli(['status', '--config', s.config, '--json']), spoolMeta(s.data), readFileSync(s.logFile, 'utf8'));
      const all = seen.join('\n');
      assert.match(all, /HTTP shipper ready/, 'the log was read');
      assert.ok(!all.includes(SECRET), `the password leaked:\n${all.split('\n').filter((l) => l.includes(SECRET)).slice(0, 5).join('\n')}`);
    } finally {
      if (agent.child.exitCode === null) agent.child.kill('SIGKILL');
    }
  });
});
