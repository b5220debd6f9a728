// ferry-agent whose data dir sits on a small filesystem (a 24 MiB tmpfs) while NATS is down and
// more lines are written than the disk holds: it pauses reading, and once NATS is back it ships
// the spool, gets the disk space back and reads the rest by itself. Real processes, real
// nats-server; needs root (mount).
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startNats, tempDir, waitFor, freePort, type NatsServer } from '../harness/index.js';
import { terminate } from '../harness/process.js';
import { lineIdsInStream, startAgentProcess, writeAgentConfig, type AgentFiles } from './agent-fixture.js';
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

describe('ferry-agent with its data dir on a full disk (e2e, real NATS, tmpfs)', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;

  before(async () => {
    nats = await startNats();
    nc = await connect({ servers: nats.url, maxReconnectAttempts: -1, reconnectTimeWait: 100 });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'FERRY_CHUNKS', subjects: ['ferry.chunks.>'] });
  });

  after(async () => {
    await nc?.close();
    await nats?.stop();
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
