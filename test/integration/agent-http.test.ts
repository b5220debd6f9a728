// The HTTP shipper and the pump against a small real node:http server, over the real spool.
import { describe, it, before, after, beforeEach } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import { hostname } from 'node:os';
import { tempDir, waitFor, type TempDir } from '../harness/index.js';
import { Spool } from '../../agent/spool/spool.js';
import { Pump } from '../../agent/shippers/pump.js';
import { HttpShipper } from '../../agent/shippers/http/shipper.js';
import { agentConfigSchema } from '../../agent/config.js';
import { decodeChunk, chunkId, CHUNK_CONTENT_TYPE } from '../../shared/chunk/codec.js';
import { silentLogger } from '../../shared/log.js';
import { createRegistry } from '../../shared/metrics.js';

const log = silentLogger();

interface Received {
  url: string;
  headers: IncomingMessage['headers'];
  raw: Buffer;
  chunk: Buffer;
  seq: number;
  atMs: number;
  socket: number;
}

/** Answers 200 with the ChunkAck the gateway sends for the chunk `id`. */
function ack(res: ServerResponse, id: string): void {
  res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id, duplicate: false, records: 1 }));
}

type Responder = (seq: number, attempt: number, res: ServerResponse, id: string) => void;

/** A gateway stand-in: records every request and answers with `respond(seq, attemptOfSeq, res, chunkId)`. */
class TestGateway {
  readonly received: Received[] = [];
  readonly attempts = new Map<number, number>();
  respond: Responder = (_s, _a, res, id) => ack(res, id);
  private server: Server | undefined;
  private sockets = 0;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      const parts: Buffer[] = [];
      req.on('data', (d: Buffer) => parts.push(d));
      req.on('end', () => {
        const raw = Buffer.concat(parts);
        if (req.url === '/v1/heartbeats') {
          res.writeHead(204).end();
          return;
        }
        const chunk = req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw;
        const { header } = decodeChunk(chunk);
        const seq = header.seq;
        const n = (this.attempts.get(seq) ?? 0) + 1;
        this.attempts.set(seq, n);
        const socket = (req.socket as unknown as { ferryId?: number }).ferryId ?? -1;
        this.received.push({ url: req.url ?? '', headers: req.headers, raw, chunk, seq, atMs: Date.now(), socket });
        this.respond(seq, n, res, chunkId(header.agentId, seq));
      });
    });
    this.server.on('connection', (s) => ((s as unknown as { ferryId?: number }).ferryId = ++this.sockets));
    await new Promise<void>((resolve) => this.server!.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  reset(): void {
    this.received.length = 0;
    this.attempts.clear();
    this.respond = (_s, _a, res, id) => ack(res, id);
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }
}

function httpConfig(url: string, over: Record<string, unknown> = {}) {
  return agentConfigSchema.parse({ inputs: [{ paths: ['/x'], topic: 't' }], transport: { http: { url, token: 's3cret', maxInFlight: 4, timeoutMs: 1000, ...over } } }).transport.http!;
}

function setup(url: string, over: Record<string, unknown> = {}, retry = { initialMs: 50, maxMs: 300, multiplier: 2, jitter: 0 }) {
  const dir = tempDir('agent-http');
  const spool = Spool.open({ dataDir: dir.path, maxBytes: 64 * 1024 * 1024, onFull: 'pause', synchronous: 'normal', log, registry: createRegistry({ defaultMetrics: false }), seqBase: 0 });
  const shipper = new HttpShipper({ config: httpConfig(url, over), agentId: 'h-01', log, registry: createRegistry({ defaultMetrics: false }) });
  const pump = new Pump({ spool, shipper, maxInFlight: 4, retry, log, registry: createRegistry({ defaultMetrics: false }) });
  let offset = 0;
  let line = 0;
  const append = (lines: number): number => {
    const values = Array.from({ length: lines }, () => Buffer.from(`line ${++line} ${'x'.repeat(100)}`));
    const start = offset;
    const entries = values.map((v, i) => ({ gap: i === 0 ? 0 : 1, length: v.length, flags: 0 }));
    offset += values.reduce((s, v) => s + v.length + 1, 0);
    const identity = { dev: '1', ino: '2', fingerprint: 'ab' };
    return spool.append(
      { header: { agentId: 'h-01', host: hostname(), path: '/var/log/app.log', topic: 'app', file: identity, offsetStart: start, offsetEnd: offset, lineCount: lines, readAtMs: Date.now() }, entries, data: values },
      { path: '/var/log/app.log', identity, offset, input: 0, updatedAtMs: Date.now() },
    );
  };
  return {
    spool,
    shipper,
    pump,
    append,
    async close() {
      await pump.stop(Date.now() + 2000);
      await shipper.stop(Date.now() + 2000);
      spool.close();
      await dir.cleanup();
    },
  };
}

describe('HTTP shipping', () => {
  const gw = new TestGateway();
  before(() => gw.start());
  after(() => gw.stop());
  beforeEach(() => gw.reset());

  it('POSTs each chunk gzipped with the bearer token to /v1/chunks, over kept-alive connections, and drains the spool on 200', async () => {
    const s = setup(gw.url);
    try {
      for (let i = 0; i < 20; i++) s.append(10);
      const stored = s.spool.readAfter(0, 100).map((c) => c.bytes);
      await s.shipper.start();
      s.pump.start();
      await waitFor(() => s.spool.stats().chunks === 0, 10_000, 'the spool to drain');
      assert.equal(gw.received.length, 20);
      for (const r of gw.received) {
        assert.equal(r.url, '/v1/chunks');
        assert.equal(r.headers['content-type'], CHUNK_CONTENT_TYPE);
        assert.equal(r.headers['content-encoding'], 'gzip');
        assert.equal(r.headers.authorization, 'Bearer s3cret');
        assert.equal(r.headers['ferry-chunk-id'], `h-01/${r.seq}`);
        assert.ok(r.raw.length < r.chunk.length, 'the body was not compressed');
        assert.ok(r.chunk.equals(stored[r.seq - 1]!), `chunk ${r.seq} arrived altered`);
      }
      const sockets = new Set(gw.received.map((r) => r.socket));
      assert.ok(sockets.size <= 5, `${sockets.size} connections for 20 requests: keep-alive not used`);
      assert.equal(s.shipper.health().state, 'connected');
    } finally {
      await s.close();
    }
  });

  it('sends the raw chunk without Content-Encoding when gzip is off', async () => {
    const s = setup(gw.url, { gzip: false });
    try {
      s.append(3);
      const [stored] = s.spool.readAfter(0, 1);
      await s.shipper.start();
      assert.deepEqual(await s.shipper.send([stored!]), ['ok']);
      assert.equal(gw.received[0]!.headers['content-encoding'], undefined);
      assert.ok(gw.received[0]!.raw.equals(stored!.bytes));
    } finally {
      await s.close();
    }
  });

  it('keeps a chunk refused with 400 in the spool, blocks behind it without hot-looping, and says why', async () => {
    const s = setup(gw.url, {}, { initialMs: 20, maxMs: 200, multiplier: 2, jitter: 0 });
    let refuse = true;
    gw.respond = (seq, _n, res, id) => {
      if (seq === 2 && refuse) res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: { code: 'FERRY_CHUNK_MALFORMED', message: 'malformed chunk: header.topic bad' } }));
      else ack(res, id);
    };
    try {
      for (let i = 0; i < 5; i++) s.append(2);
      await s.shipper.start();
      s.pump.start();
      await waitFor(() => s.pump.status().blocked !== null, 5000, 'the pump to block on the refused chunk');
      const blocked = s.pump.status().blocked!;
      assert.equal(blocked.seq, 2);
      assert.match(blocked.error, /HTTP 400: FERRY_CHUNK_MALFORMED: malformed chunk/);
      const t0 = Date.now();
      await new Promise((r) => setTimeout(r, 700)); // a fixed observation window: what matters is how often chunk 2 is sent in it
      const sends = gw.attempts.get(2)!;
      assert.ok(sends <= 2 + Math.ceil((Date.now() - t0) / 200), `chunk 2 sent ${sends} times: hot loop`);
      assert.equal(s.spool.stats().minSeq, 2, 'the refused chunk must stay in the spool');
      assert.equal(s.spool.stats().chunks, 4);
      refuse = false;
      await waitFor(() => s.spool.stats().chunks === 0, 5000, 'the spool to drain once the gateway accepts the chunk');
      assert.equal(s.pump.status().blocked, null);
    } finally {
      await s.close();
    }
  });

  it('keeps a chunk answered 200 with anything but its ChunkAck (an HTML login page, another id, no JSON), retries it with backoff and says why', async () => {
    const s = setup(gw.url, {}, { initialMs: 20, maxMs: 100, multiplier: 2, jitter: 0 });
    const wrong: Array<(res: ServerResponse) => void> = [
      (res) => res.writeHead(200, { 'content-type': 'text/html' }).end('<html><body><form action="/login">Please sign in</form></body></html>'),
      (res) => res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: 'h-01/999', duplicate: false, records: 1 })),
      (res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{}'),
      (res) => res.writeHead(204).end(),
    ];
    gw.respond = (_seq, n, res, id) => (n <= wrong.length ? wrong[n - 1]!(res) : ack(res, id));
    try {
      s.append(1);
      await s.shipper.start();
      const [first] = await s.shipper.send(s.spool.readAfter(0, 1));
      assert.ok(typeof first === 'object' && 'retry' in first, `a 200 HTML page must be a retry, got ${JSON.stringify(first)}`);
      assert.match(first.retry.message, /not the gateway's acknowledgement of chunk h-01\/1/);
      assert.equal(s.shipper.health().ok, false, 'health (and so /readyz) must show the bad answers');
      assert.match(s.shipper.health().detail, /acknowledgement/);
      s.pump.start();
      await waitFor(() => s.spool.stats().chunks === 0, 5000, 'the chunk to ship once the real ack comes');
      assert.equal(gw.attempts.get(1), wrong.length + 1, 'every wrong answer must have been retried, none taken as an ack');
      assert.equal(s.shipper.health().ok, true);
    } finally {
      await s.close();
    }
  });

  it('retries a 429 no sooner than its Retry-After', async () => {
    const s = setup(gw.url);
    gw.respond = (_seq, n, res, id) => (n === 1 ? res.writeHead(429, { 'retry-after': '1' }).end() : ack(res, id));
    try {
      s.append(1);
      await s.shipper.start();
      s.pump.start();
      await waitFor(() => s.spool.stats().chunks === 0, 5000, 'the chunk to ship after the 429');
      const [a, b] = gw.received;
      assert.ok(b!.atMs - a!.atMs >= 990, `resent after ${b!.atMs - a!.atMs} ms despite Retry-After: 1`);
    } finally {
      await s.close();
    }
  });

  it('retries a 503 with backoff and ships the chunk when the gateway recovers', async () => {
    const s = setup(gw.url);
    gw.respond = (_seq, n, res, id) => (n <= 2 ? res.writeHead(503).end(JSON.stringify({ error: { code: 'FERRY_KAFKA', message: 'Kafka unavailable' } })) : ack(res, id));
    try {
      s.append(1);
      s.append(1);
      await s.shipper.start();
      s.pump.start();
      await waitFor(() => s.pump.status().retrying !== null, 5000, 'the pump to retry');
      assert.match(s.pump.status().retrying!.error, /HTTP 503 for chunk h-01\/1: FERRY_KAFKA: Kafka unavailable/);
      await waitFor(() => s.spool.stats().chunks === 0, 5000, 'the spool to drain after the 503s');
      assert.equal(gw.attempts.get(1), 3);
      assert.equal(s.pump.status().blocked, null);
    } finally {
      await s.close();
    }
  });

  it('answers retry when the gateway cannot be reached or does not answer in time', async () => {
    const down = setup('http://127.0.0.1:1');
    const slow = setup(gw.url, { timeoutMs: 200 });
    gw.respond = () => undefined; // never answers
    try {
      down.append(1);
      slow.append(1);
      await down.shipper.start();
      await slow.shipper.start();
      const [r1] = await down.shipper.send(down.spool.readAfter(0, 1));
      assert.ok(typeof r1 === 'object' && 'retry' in r1, 'a connection refused must be a retry');
      assert.equal(down.shipper.health().state, 'disconnected');
      assert.match(down.shipper.health().detail, /unreachable/);
      const t0 = Date.now();
      const [r2] = await slow.shipper.send(slow.spool.readAfter(0, 1));
      assert.ok(typeof r2 === 'object' && 'retry' in r2 && /within 200 ms/.test(r2.retry.message), 'a timeout must be a retry naming the timeout');
      assert.ok(Date.now() - t0 < 2000);
    } finally {
      await down.close();
      await slow.close();
    }
  });

  it('POSTs heartbeats as JSON to /v1/heartbeats', async () => {
    const s = setup(gw.url);
    try {
      await s.shipper.start();
      await s.shipper.heartbeat({
        v: 1, agentId: 'h-01', host: 'h', version: '0', sentAtMs: Date.now(), startedAtMs: Date.now(),
        spool: { chunks: 0, bytes: 0, oldestUnshippedAgeMs: null, full: false }, lastShipAtMs: null, transport: 'http', inputs: 1, files: 0,
      });
      assert.equal(s.shipper.health().state, 'connected');
    } finally {
      await s.close();
    }
  });
});

describe('HTTPS shipping', () => {
  let dir: TempDir;
  let server: HttpsServer;
  let url = '';
  const files = { serverCert: '', serverKey: '', clientCert: '', clientKey: '' };
  const seen: Array<{ authorized: boolean; peerCN: string | undefined }> = [];

  function selfSigned(name: string, cn: string, san: string): { cert: string; key: string } {
    const cert = join(dir.path, `${name}.crt`);
    const key = join(dir.path, `${name}.key`);
    execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=${san}`], { stdio: 'pipe' });
    return { cert, key };
  }

  before(async () => {
    dir = tempDir('agent-https');
    const s = selfSigned('server', 'localhost', 'IP:127.0.0.1');
    const c = selfSigned('client', 'agent-01', 'DNS:agent-01');
    Object.assign(files, { serverCert: s.cert, serverKey: s.key, clientCert: c.cert, clientKey: c.key });
    server = createHttpsServer(
      { cert: readFileSync(s.cert), key: readFileSync(s.key), ca: readFileSync(c.cert), requestCert: true, rejectUnauthorized: false },
      (req, res) => {
        const sock = req.socket as TLSSocket;
        const peer = sock.getPeerCertificate();
        const cn = peer?.subject?.CN;
        seen.push({ authorized: sock.authorized, peerCN: Array.isArray(cn) ? cn.join(',') : cn });
        const parts: Buffer[] = [];
        req.on('data', (d: Buffer) => parts.push(d));
        req.on('end', () => {
          const raw = Buffer.concat(parts);
          const { header } = decodeChunk(req.headers['content-encoding'] === 'gzip' ? gunzipSync(raw) : raw);
          ack(res, chunkId(header.agentId, header.seq));
        });
      },
    );
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  after(async () => {
    server?.closeAllConnections();
    await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    await dir?.cleanup();
  });

  it('trusts the gateway through tls.caFile and presents the client certificate (mTLS)', async () => {
    const s = setup(url, { tls: { caFile: files.serverCert, certFile: files.clientCert, keyFile: files.clientKey } });
    try {
      s.append(2);
      await s.shipper.start();
      assert.deepEqual(await s.shipper.send(s.spool.readAfter(0, 1)), ['ok']);
      assert.deepEqual(seen.at(-1), { authorized: true, peerCN: 'agent-01' });
    } finally {
      await s.close();
    }
  });

  it('answers retry, naming the certificate problem, when the gateway certificate is not trusted', async () => {
    const s = setup(url);
    try {
      s.append(2);
      await s.shipper.start();
      const [r] = await s.shipper.send(s.spool.readAfter(0, 1));
      assert.ok(typeof r === 'object' && 'retry' in r, 'an untrusted certificate must not lose or refuse the chunk');
      assert.match(r.retry.message, /self[- ]signed certificate/i);
    } finally {
      await s.close();
    }
  });

  it('refuses to start when a TLS file cannot be read, naming the key', async () => {
    const s = setup(url, { tls: { caFile: join(dir.path, 'missing.pem') } });
    try {
      await assert.rejects(() => s.shipper.start(), /transport\.http\.tls\.caFile: cannot read .*missing\.pem/);
    } finally {
      await s.close();
    }
  });
});
