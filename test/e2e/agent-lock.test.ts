// One ferry-agent per data dir, enforced by an OS lock: two `ferry-agent run` processes started
// at the same instant on one data dir, real processes and a real nats-server.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startNats, tempDir, waitFor, freePort, type NatsServer } from '../harness/index.js';
import { terminate, keepAlive } from '../harness/process.js';
import { agentStatus, lineIdsInStream, startAgentProcess, writeAgentConfig, type AgentFiles } from './agent-fixture.js';

describe('ferry-agent data dir lock (e2e, real NATS)', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'FERRY_CHUNKS', subjects: ['ferry.chunks.>'] });
  });

  after(async () => {
    await nc?.close();
    await nats?.stop();
  });

  it('lets exactly one of two agents started at once on one data dir run; the other exits 1 with FERRY_SPOOL_LOCKED naming the dir, and a kill -9ed holder does not block the next start', async () => {
    const dir = tempDir('e2e-lock');
    const logs = join(dir.path, 'logs');
    mkdirSync(logs);
    const files: AgentFiles = { agentId: 'e2e-lock', config: join(dir.path, 'agent.yaml'), dataDir: join(dir.path, 'data'), glob: `${logs}/*.log`, natsUrl: nats.url, monitorPort: await freePort() };
    writeAgentConfig(files);
    appendFileSync(join(logs, 'app.log'), Array.from({ length: 100 }, (_, i) => `id=${i + 1} line\n`).join(''));
    const agents = await Promise.all([startAgentProcess(files.config), startAgentProcess(files.config)]);
    try {
      const first = await Promise.race(agents.map((a, i) => a.exited.then(() => i)));
      const loser = agents[first]!;
      const winner = agents[1 - first]!;
      const exit = await keepAlive(loser.exited);
      assert.deepEqual(exit, { code: 1, signal: null }, `the second agent's output:\n${loser.output.text(20)}`);
      assert.match(loser.output.text(50), /FERRY_SPOOL_LOCKED/);
      assert.ok(loser.output.text(50).includes(`${files.dataDir} is in use by another ferry-agent`), loser.output.text(20));
      assert.equal(winner.running(), true, `the first agent must keep running:\n${winner.output.text(20)}`);

      const ids = await waitFor(async () => {
        const got = await lineIdsInStream(jsm, files.agentId);
        return got.length >= 100 ? got : null;
      }, 15_000, `100 lines in the stream (agent output:\n${winner.output.text(20)})`);
      assert.deepEqual(ids, Array.from({ length: 100 }, (_, i) => i + 1), 'each line once: only one agent cut chunks');

      // status works while the agent runs
      const live = await agentStatus(files.config);
      assert.equal(live.code, 0);
      assert.equal(live.report.running, true);

      // a third start while the holder runs names its pid
      const third = await startAgentProcess(files.config);
      assert.equal((await keepAlive(third.exited)).code, 1);
      assert.ok(third.output.text(50).includes(`pid ${winner.pid}`), third.output.text(20));

      await terminate(winner, 'SIGKILL', 0);
      const stopped = await agentStatus(files.config);
      assert.equal(stopped.code, 3, 'status says not running once the holder is dead');
      assert.equal(stopped.report.running, false);

      const next = await startAgentProcess(files.config);
      try {
        appendFileSync(join(logs, 'app.log'), 'id=101 line\n');
        await waitFor(async () => (await lineIdsInStream(jsm, files.agentId)).includes(101), 15_000, `line 101 after the restart (agent output:\n${next.output.text(20)})`);
        assert.equal(next.running(), true);
      } finally {
        await terminate(next, 'SIGTERM', 5000);
      }
    } finally {
      for (const a of agents) await terminate(a, 'SIGKILL', 0);
      await dir.cleanup();
    }
  });
});
