// Slow senders against the HTTP input listening on a real socket: trickled headers and bodies are
// cut by the server's timeouts, and one token cannot hold every request slot.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { silentLogger } from '../../../../shared/log.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { CHUNK_CONTENT_TYPE } from '../../../../shared/chunk/codec.js';
import { HttpInput } from '../../../../gateway/inputs/http/input.js';
import { waitFor } from '../../../harness/wait.js';
import { FakeSink, httpConfig, makeChunk, newAgents } from './fixtures.js';

const TOKENS = ['slow-secret', 'other-secret'];

async function startInput(http: Record<string, unknown>): Promise<{ input: HttpInput; sink: FakeSink; host: string; port: number }> {
  const sink = new FakeSink();
  const registry = createRegistry({ defaultMetrics: false });
  const input = new HttpInput({ config: httpConfig({ listen: '127.0.0.1:0', tokens: TOKENS, ...http }), sink, agents: newAgents(registry), log: silentLogger(), registry });
  const address = await input.start();
  const [host, port] = address.split(':');
  return { input, sink, host: host!, port: Number(port) };
}

interface Slow {
  socket: Socket;
  /** what the server sent back */
  received: () => string;
  /** resolves with the ms from connect to the server closing the connection */
  closed: Promise<number>;
  stop: () => void;
}

/** Opens a connection and writes `head`, then one byte of `drip` every `everyMs` until closed. */
function trickle(host: string, port: number, head: string, drip: string, everyMs: number): Slow {
  const socket = connect({ host, port });
  const t0 = Date.now();
  const parts: Buffer[] = [];
  socket.on('data', (d: Buffer) => parts.push(d));
  socket.on('error', () => undefined);
  let i = 0;
  let timer: NodeJS.Timeout | undefined;
  socket.once('connect', () => {
    socket.write(head);
    timer = setInterval(() => {
      if (!socket.destroyed && socket.writable) socket.write(drip[i++ % drip.length]!);
    }, everyMs);
  });
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(Date.now() - t0)));
  void closed.then(() => clearInterval(timer));
  return {
    socket,
    received: () => Buffer.concat(parts).toString('latin1'),
    closed,
    stop: () => {
      clearInterval(timer);
      socket.destroy();
    },
  };
}

function chunkHead(token: string, contentLength: number): string {
  return `POST /v1/chunks HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\nContent-Type: ${CHUNK_CONTENT_TYPE}\r\nContent-Length: ${contentLength}\r\n\r\n`;
}

async function postChunk(host: string, port: number, token: string, seq: number): Promise<number> {
  const res = await fetch(`http://${host}:${port}/v1/chunks`, {
    method: 'POST',
    body: makeChunk(['fast'], { seq }),
    headers: { 'content-type': CHUNK_CONTENT_TYPE, authorization: `Bearer ${token}`, connection: 'close' },
  });
  await res.arrayBuffer();
  return res.status;
}

describe('HTTP input against slow senders (real sockets)', () => {
  it('answers 408 and closes a connection whose body trickles in for longer than http.requestTimeoutMs', async () => {
    const { input, sink, host, port } = await startInput({ requestTimeoutMs: 600, headersTimeoutMs: 300 });
    try {
      const slow = trickle(host, port, chunkHead('slow-secret', 100_000), 'x', 50);
      const tookMs = await slow.closed;
      assert.ok(tookMs >= 500 && tookMs < 5000, `closed after ${tookMs} ms`);
      assert.match(slow.received(), /^HTTP\/1\.1 408/);
      assert.equal(sink.calls, 0);
      assert.equal(await postChunk(host, port, 'slow-secret', 2), 200, 'the input keeps serving');
    } finally {
      await input.stop(Date.now() + 2000);
    }
  });

  it('closes a connection whose headers trickle in for longer than http.headersTimeoutMs', async () => {
    const { input, host, port } = await startInput({ requestTimeoutMs: 5000, headersTimeoutMs: 400 });
    try {
      const slow = trickle(host, port, 'POST /v1/chunks HTTP/1.1\r\nHost: gw\r\n', 'X-Padding: aaaaaaaa\r\n', 20);
      const tookMs = await slow.closed;
      assert.ok(tookMs >= 300 && tookMs < 4000, `closed after ${tookMs} ms`);
      assert.match(slow.received(), /^HTTP\/1\.1 408/);
    } finally {
      await input.stop(Date.now() + 2000);
    }
  });

  it('answers 429 once one token holds http.maxConcurrentRequestsPerToken slow bodies, serves another token meanwhile, and frees the slots when they are cut', async () => {
    const { input, host, port } = await startInput({ requestTimeoutMs: 1500, headersTimeoutMs: 500, maxConcurrentRequests: 10, maxConcurrentRequestsPerToken: 2 });
    const slows: Slow[] = [];
    try {
      for (let i = 0; i < 2; i++) slows.push(trickle(host, port, chunkHead('slow-secret', 100_000), 'x', 100));
      let seq = 10;
      await waitFor(async () => (await postChunk(host, port, 'slow-secret', seq++)) === 429, 5000, 'the slow token to be at its limit');
      assert.equal(await postChunk(host, port, 'other-secret', 100), 200, 'another token is still admitted');
      await Promise.all(slows.map((s) => s.closed));
      assert.equal(await postChunk(host, port, 'slow-secret', 101), 200, 'the slots came back');
    } finally {
      for (const s of slows) s.stop();
      await input.stop(Date.now() + 2000);
    }
  });
});

describe('HTTP input idle connections (real sockets)', () => {
  it('closes a keep-alive connection left idle after its answer for http.keepAliveTimeoutMs', async () => {
    const { input, host, port } = await startInput({ keepAliveTimeoutMs: 300 });
    try {
      const idle = trickle(host, port, 'GET /v1/agents HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer other-secret\r\n\r\n', '', 1_000_000);
      const tookMs = await idle.closed;
      assert.match(idle.received(), /^HTTP\/1\.1 200/);
      assert.ok(tookMs >= 250 && tookMs < 4000, `closed after ${tookMs} ms`);
    } finally {
      await input.stop(Date.now() + 2000);
    }
  });
});
