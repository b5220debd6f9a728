// ferry-agent and its spool as operators meet them, real processes and a real nats-server:
// - one agent per data dir: two `ferry-agent run` started at the same instant on one data dir;
// - the data dir on a small filesystem (a 24 MiB tmpfs; needs root for mount) while NATS is down
//   and more lines are written than the disk holds: it pauses reading, and once NATS is back it
//   ships the spool, gets the disk space back and reads the rest by itself.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { JetStreamManager } from '@nats-io/jetstream';
import { tempDir, waitFor, freePort, type NatsServer } from '../harness/index.js';
import { terminate, keepAlive } from '../harness/process.js';
import { agentStatus, lineIdsInStream, startAgentProcess, startChunkStream, writeAgentConfig, type AgentFiles, type ChunkStream } from './agent-fixture.js';
import type { StatusReport } from '../../agent/status.js';

const LINES = 200_000;
const PAD = 'x'.repeat(190);

function mountTmpfs(dir: string, size: string): () => void {
  mkdirSync(dir, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0700`, 'tmpfs', dir]);
  return () => {
    try {
      execFileSync('umount', [dir]);
    } catch {
      execFileSync('umount', ['-l', dir]);
    }
  };
}

describe('ferry-agent data dir: lock and full disk (e2e, real NATS)', () => {
  let stream: ChunkStream;
  let nats: NatsServer;
  let jsm: JetStreamManager;

  before(async () => {
    stream = await startChunkStream();
    ({ nats, jsm } = stream);
  });

  after(async () => {
    await stream?.close();
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

  it('pauses reading when the disk is down to its reserve, and after NATS is back ships every line exactly once, reading again by itself', async (t) => {
    const dir = tempDir('e2e-diskfull');
    const logs = join(dir.path, 'logs');
    mkdirSync(logs);
    const fs = join(dir.path, 'fs');
    const unmount = mountTmpfs(fs, '24m');
    const files: AgentFiles = {
      agentId: 'e2e-diskfull',
      config: join(dir.path, 'agent.yaml'),
      dataDir: join(fs, 'data'),
      glob: `${logs}/*.log`,
      natsUrl: nats.url,
      monitorPort: await freePort(),
      extra: 'spool: { minFreeBytes: 4MiB }',
    };
    writeAgentConfig(files);
    const file = join(logs, 'app.log');
    const write = (from: number, to: number): void => {
      let text = '';
      for (let i = from; i < to; i++) text += `id=${i} ${PAD}\n`;
      appendFileSync(file, text);
    };
    const live = async (): Promise<StatusReport> => (await (await fetch(`http://127.0.0.1:${files.monitorPort}/status`)).json()) as StatusReport;
    const agent = await startAgentProcess(files.config);
    try {
      write(0, 1000);
      await waitFor(async () => (await lineIdsInStream(jsm, files.agentId)).length >= 1000, 15_000, `the first lines in the stream (agent output:\n${agent.output.text(10)})`);
      await nats.kill();
      for (let from = 1000; from < LINES; from += 20_000) write(from, Math.min(LINES, from + 20_000)); // ~40 MB
      const paused = await waitFor(async () => {
        const r = await live();
        return r.spool.full ? r : null;
      }, 30_000, `the spool to fill the disk (agent output:\n${agent.output.text(10)})`);
      t.diagnostic(`paused: ${paused.spool.fullReason}, ${paused.spool.chunks} chunks, files ${paused.spool.diskBytes} B, ${paused.spool.freeBytes} B free; read ${paused.files[0]?.offset} of ${statSync(file).size}`);
      assert.ok(paused.spool.fullReason === 'reserve' || paused.spool.fullReason === 'disk', `full because of the disk, not the cap: ${paused.spool.fullReason}`);
      assert.equal(paused.tailer?.paused, true);
      assert.ok(paused.files[0]!.offset < statSync(file).size, 'reading stopped before the end of the file');
      assert.equal(agent.running(), true);

      await nats.restart();
      const ids = await waitFor(async () => {
        const got = await lineIdsInStream(jsm, files.agentId);
        return new Set(got).size >= LINES ? got : null;
      }, 120_000, `all ${LINES} lines in the stream after NATS came back (agent output:\n${agent.output.text(20)})`);
      const counts = new Map<number, number>();
      for (const id of ids) counts.set(id, (counts.get(id) ?? 0) + 1);
      assert.equal(ids.length, LINES, `duplicated lines: ${[...counts].filter(([, n]) => n > 1).slice(0, 5).join(' ')}`);
      for (let i = 0; i < LINES; i++) assert.equal(counts.get(i), 1, `line ${i} missing`);

      const drained = await waitFor(async () => {
        const r = await live();
        return !r.spool.full && r.spool.chunks === 0 ? r : null;
      }, 15_000, 'the spool to drain and take chunks again');
      t.diagnostic(`drained: files ${drained.spool.diskBytes} B, ${drained.spool.freeBytes} B free`);
      assert.ok(drained.spool.diskBytes < 4 * 1024 * 1024, `the spool gave its disk space back (${drained.spool.diskBytes} B)`);
      assert.equal(drained.tailer?.paused, false);
      assert.equal(drained.files[0]!.offset, statSync(file).size);
      // and it keeps reading
      write(LINES, LINES + 10);
      await waitFor(async () => (await lineIdsInStream(jsm, files.agentId)).includes(LINES + 9), 15_000, 'lines written after the recovery');
    } finally {
      await terminate(agent, 'SIGKILL', 0);
      unmount();
      await dir.cleanup();
    }
  });
});
