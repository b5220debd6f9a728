// The built ferry-agent CLI shipping over HTTP to a gateway stand-in (node:http in the test):
// lines arrive as chunks, heartbeats arrive, a refused chunk blocks shipping visibly (status,
// /readyz, /metrics) without loss, and shipping resumes once the gateway accepts it.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { gunzipSync } from 'node:zlib';
import { tempDir, waitFor, freePort, type TempDir } from '../harness/index.js';
import { spawnTracked, terminate, keepAlive } from '../harness/process.js';
import { decodeChunk } from '../../shared/chunk/codec.js';
import { parseHeartbeat, type Heartbeat } from '../../shared/protocol.js';
import type { StatusReport } from '../../agent/status.js';

const CLI = fileURLToPath(new URL('../../agent/cli.js', import.meta.url));
const run = promisify(execFile);

describe('ferry-agent run over HTTP (e2e)', () => {
  let dir: TempDir;
  let server: Server;
  let gatewayUrl = '';
  const lines: string[] = [];
  const heartbeats: Heartbeat[] = [];
  const seqsSeen: number[] = [];
  const accepted = new Set<number>();
  let refuseSeq: number | null = null;

  before(async () => {
    dir = tempDir('e2e-agent-http');
    server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        if (req.headers.authorization !== 'Bearer tok') {
          res.writeHead(401).end();
          return;
        }
        const body = req.headers['content-encoding'] === 'gzip' ? gunzipSync(Buffer.concat(parts)) : Buffer.concat(parts);
        if (req.url === '/v1/heartbeats') {
          const hb = parseHeartbeat(JSON.parse(body.toString()));
          if (hb) heartbeats.push(hb);
          res.writeHead(204).end();
          return;
        }
        const chunk = decodeChunk(body);
        seqsSeen.push(chunk.header.seq);
        if (chunk.header.seq === refuseSeq) {
          res.writeHead(403, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'FERRY_TOPIC_FORBIDDEN', message: 'topic "app" is not allowed for this sender' } }));
          return;
        }
        if (!accepted.has(chunk.header.seq)) for (const r of chunk.records) lines.push(r.value.toString());
        accepted.add(chunk.header.seq);
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: `${chunk.header.agentId}/${chunk.header.seq}`, duplicate: false, records: chunk.records.length }));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    gatewayUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await dir?.cleanup();
  });

  it('ships lines and heartbeats, blocks visibly on a refused chunk without losing it, and resumes when it is accepted', async () => {
    const logs = join(dir.path, 'logs');
    mkdirSync(logs);
    const port = await freePort();
    const config = join(dir.path, 'agent.yaml');
    writeFileSync(
      config,
      `id: http-e2e
dataDir: ${join(dir.path, 'data')}
inputs:
  - paths: ["${logs}/*.log"]
    topic: app
transport:
  http:
    url: "${gatewayUrl}"
    token: "\${TEST_TOKEN}"
chunk: { maxDelayMs: 50 }
tail: { pollIntervalMs: 50 }
retry: { initialMs: 50, maxMs: 300 }
heartbeatIntervalMs: 200
monitor: { listen: "127.0.0.1:${port}" }
shutdownTimeoutMs: 3000
`,
    );
    const file = join(logs, 'app.log');
    appendFileSync(file, 'first line\nsecond line\n');
    const agent = await spawnTracked(process.execPath, [CLI, 'run', '--config', config], { env: { ...process.env, TEST_TOKEN: 'tok' } });
    try {
      await waitFor(() => lines.length === 2, 10_000, `the first lines at the gateway (agent output:\n${agent.output.text(10)})`);
      assert.deepEqual(lines, ['first line', 'second line']);
      await waitFor(() => heartbeats.some((h) => h.agentId === 'http-e2e' && h.transport === 'http'), 5000, 'a heartbeat over HTTP');

      // the gateway now refuses the next chunk: it must stay in the spool and block what follows
      refuseSeq = Math.max(...seqsSeen) + 1;
      appendFileSync(file, 'refused line\n');
      await waitFor(() => seqsSeen.includes(refuseSeq!), 5000, 'the refused chunk to be sent');
      appendFileSync(file, 'after the refused one\n');
      const blocked = await waitFor(async () => {
        const st = await fetch(`http://127.0.0.1:${port}/status`).then((r) => r.json() as Promise<StatusReport>);
        return st.shipping?.blocked && st.spool.chunks === 2 ? st : null;
      }, 10_000, 'status to show the block with both chunks kept');
      assert.equal(blocked.shipping!.blocked!.seq, refuseSeq);
      assert.match(blocked.shipping!.blocked!.error, /HTTP 403: FERRY_TOPIC_FORBIDDEN/);
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 503);
      assert.match(await (await fetch(`http://127.0.0.1:${port}/metrics`)).text(), /^ferry_ship_fatal_chunks_total 1$/m);
      const { stdout } = await run(process.execPath, [CLI, 'status', '--config', config], { env: { ...process.env, TEST_TOKEN: 'tok' } });
      assert.match(stdout, /shipping: BLOCKED behind chunk \d+/);
      assert.equal(lines.includes('after the refused one'), false, 'a chunk behind the refused one was delivered');
      const sendsBefore = seqsSeen.filter((s) => s === refuseSeq).length;
      await waitFor(() => seqsSeen.filter((s) => s === refuseSeq).length > sendsBefore, 5000, 'a slow re-check of the refused chunk');

      refuseSeq = null;
      await waitFor(() => lines.includes('after the refused one'), 10_000, 'shipping to resume');
      assert.deepEqual(lines, ['first line', 'second line', 'refused line', 'after the refused one']);
      assert.equal((await fetch(`http://127.0.0.1:${port}/readyz`)).status, 200);

      agent.process.kill('SIGTERM');
      assert.deepEqual(await keepAlive(agent.exited), { code: 0, signal: null });
    } finally {
      await terminate(agent, 'SIGKILL', 0);
    }
  });
});
