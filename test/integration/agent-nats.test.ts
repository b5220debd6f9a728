// The NATS shipper and the pump against a real nats-server with JetStream, over the real spool.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { connect, nkeys, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startNats, tempDir, waitFor, type NatsServer, type TempDir } from '../harness/index.js';
import { Spool } from '../../agent/spool/spool.js';
import { Pump } from '../../agent/shippers/pump.js';
import { NatsShipper } from '../../agent/shippers/nats/shipper.js';
import { agentConfigSchema } from '../../agent/config.js';
import { chunkMsgId } from '../../shared/protocol.js';
import { decodeChunk } from '../../shared/chunk/codec.js';
import { silentLogger } from '../../shared/log.js';
import { createRegistry } from '../../shared/metrics.js';

const log = silentLogger();

function natsConfig(url: string, subjectPrefix = 'ferry.chunks') {
  const cfg = agentConfigSchema.parse({
    inputs: [{ paths: ['/x'], topic: 't' }],
    transport: { nats: { servers: [url], subjectPrefix, publishTimeoutMs: 2000, maxInFlight: 8 } },
  });
  return cfg.transport.nats!;
}

interface Parts {
  spool: Spool;
  shipper: NatsShipper;
  pump: Pump;
  append(lines: number): number;
  close(): Promise<void>;
}

function parts(url: string, agentId: string, subjectPrefix?: string): Parts {
  const dir = tempDir('agent-nats');
  const spool = Spool.open({ dataDir: dir.path, maxBytes: 64 * 1024 * 1024, onFull: 'pause', synchronous: 'normal', log, registry: createRegistry({ defaultMetrics: false }), seqBase: 0 });
  const shipper = new NatsShipper({ config: natsConfig(url, subjectPrefix), agentId, log, registry: createRegistry({ defaultMetrics: false }) });
  const pump = new Pump({ spool, shipper, maxInFlight: 8, retry: { initialMs: 50, maxMs: 400, multiplier: 2, jitter: 0.1 }, log, registry: createRegistry({ defaultMetrics: false }) });
  let offset = 0;
  let line = 0;
  return {
    spool,
    shipper,
    pump,
    append(lines: number): number {
      const values = Array.from({ length: lines }, () => Buffer.from(`${agentId} line ${++line}`));
      const start = offset;
      const entries = values.map((v) => ({ gap: 0, length: v.length, flags: 0 }));
      entries.forEach((e, i) => (e.gap = i === 0 ? 0 : 1));
      offset += values.reduce((s, v) => s + v.length + 1, 0);
      const identity = { dev: '1', ino: '2', fingerprint: 'ab' };
      return spool.append(
        {
          header: { agentId, host: hostname(), path: '/var/log/app.log', topic: 'app', file: identity, offsetStart: start, offsetEnd: offset, lineCount: lines, readAtMs: Date.now() },
          entries,
          data: values,
        },
        { path: '/var/log/app.log', identity, offset, input: 0, updatedAtMs: Date.now() },
      );
    },
    async close() {
      await pump.stop(Date.now() + 2000);
      await shipper.stop(Date.now() + 2000);
      spool.close();
      await dir.cleanup();
    },
  };
}

/** Every message of a stream, in stream order, with its Nats-Msg-Id and decoded chunk seq. */
async function streamMessages(jsm: JetStreamManager, stream: string): Promise<Array<{ msgId: string | undefined; seq: number; lines: string[]; data: Uint8Array }>> {
  const info = await jsm.streams.info(stream);
  const out: Array<{ msgId: string | undefined; seq: number; lines: string[]; data: Uint8Array }> = [];
  for (let s = info.state.first_seq; s <= info.state.last_seq && info.state.messages > 0; s++) {
    const m = await jsm.streams.getMessage(stream, { seq: s });
    if (!m) continue;
    const chunk = decodeChunk(m.data);
    out.push({ msgId: m.header?.get('Nats-Msg-Id'), seq: chunk.header.seq, lines: chunk.records.map((r) => r.value.toString()), data: m.data });
  }
  return out;
}

describe('NATS JetStream shipping', () => {
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

  it('publishes spooled chunks with msg id agentId/seq/<digest of the chunk> in seq order and deletes them from the spool once acked', async () => {
    const p = parts(nats.url, 'web-01');
    try {
      for (let i = 0; i < 30; i++) p.append(5);
      await p.shipper.start();
      p.pump.start();
      await waitFor(() => p.spool.stats().chunks === 0, 15_000, 'the spool to drain into JetStream');
      const msgs = (await streamMessages(jsm, 'FERRY_CHUNKS')).filter((m) => m.msgId?.startsWith('web-01/'));
      assert.equal(msgs.length, 30);
      assert.deepEqual(msgs.map((m) => m.seq), Array.from({ length: 30 }, (_, i) => i + 1));
      assert.deepEqual(msgs.map((m) => m.msgId), msgs.map((m) => chunkMsgId('web-01', m.seq, m.data)));
      assert.equal(msgs[0]!.lines[0], 'web-01 line 1');
      assert.equal(msgs[29]!.lines[4], 'web-01 line 150');
      assert.equal(p.shipper.health().state, 'connected');
    } finally {
      await p.close();
    }
  });

  it('stores a chunk sent twice inside the duplicate window only once', async () => {
    const p = parts(nats.url, 'dup-01');
    try {
      p.append(3);
      await p.shipper.start();
      await p.shipper.connected(5000);
      const [chunk] = p.spool.readAfter(0, 1);
      assert.deepEqual(await p.shipper.send([chunk!]), ['ok']);
      assert.deepEqual(await p.shipper.send([chunk!, chunk!]), ['ok', 'ok']);
      const msgs = (await streamMessages(jsm, 'FERRY_CHUNKS')).filter((m) => m.msgId?.startsWith('dup-01/'));
      assert.equal(msgs.length, 1);
    } finally {
      await p.close();
    }
  });

  it('retries while no stream captures the subject, and ships once the stream exists', async () => {
    const p = parts(nats.url, 'early-01', 'late.chunks');
    try {
      for (let i = 0; i < 5; i++) p.append(2);
      await p.shipper.start();
      p.pump.start();
      await waitFor(() => /no JetStream stream captures subject late\.chunks\.early-01/.test(p.pump.status().retrying?.error ?? ''), 10_000, 'the pump to retry for want of a stream');
      assert.equal(p.spool.stats().chunks, 5);
      assert.match(p.shipper.health().detail, /no JetStream stream/);
      await jsm.streams.add({ name: 'LATE', subjects: ['late.chunks.>'] });
      await waitFor(() => p.spool.stats().chunks === 0, 15_000, 'the spool to drain once the stream exists');
      const msgs = await streamMessages(jsm, 'LATE');
      assert.deepEqual(msgs.map((m) => m.seq), [1, 2, 3, 4, 5]);
      assert.doesNotMatch(p.shipper.health().detail, /no JetStream stream/);
    } finally {
      await p.close();
    }
  });

  it('keeps chunks in the spool while NATS is down and drains them in order, each once, when it is back', async () => {
    const p = parts(nats.url, 'outage-01');
    try {
      await p.shipper.start();
      p.pump.start();
      for (let i = 0; i < 10; i++) p.append(4);
      await waitFor(() => p.spool.stats().chunks === 0, 15_000, 'the first chunks to ship');
      await nats.kill();
      await waitFor(() => p.shipper.health().state === 'disconnected', 10_000, 'the shipper to notice NATS is gone');
      for (let i = 0; i < 5; i++) p.append(4);
      await waitFor(() => p.pump.status().retrying !== null, 10_000, 'the pump to retry');
      for (let i = 0; i < 15; i++) p.append(4);
      assert.equal(p.spool.stats().chunks, 20, 'the spool should hold every chunk cut during the outage');
      assert.equal(p.shipper.health().ok, false);
      await nats.restart();
      await waitFor(() => p.spool.stats().chunks === 0, 30_000, 'the spool to drain after NATS came back');
      const nc2 = await connect({ servers: nats.url });
      try {
        const jsm2 = await jetstreamManager(nc2);
        const msgs = (await streamMessages(jsm2, 'FERRY_CHUNKS')).filter((m) => m.msgId?.startsWith('outage-01/'));
        assert.deepEqual(msgs.map((m) => m.seq), Array.from({ length: 30 }, (_, i) => i + 1));
      } finally {
        await nc2.close();
      }
      assert.equal(p.shipper.health().state, 'connected');
    } finally {
      await p.close();
    }
  });
});

describe('NATS credentials', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let dir: TempDir;
  let seedFile: string;

  before(async () => {
    dir = tempDir('nats-auth');
    const user = nkeys.createUser();
    seedFile = join(dir.path, 'agent.nk');
    writeFileSync(seedFile, new TextDecoder().decode(user.getSeed()) + '\n', { mode: 0o600 });
    const conf = join(dir.path, 'auth.conf');
    writeFileSync(
      conf,
      `accounts {
  APP {
    jetstream: enabled
    users: [
      { user: anon, password: anon }
      { user: ferry, password: "s3cret" }
      { nkey: ${user.getPublicKey()} }
    ]
  }
}
no_auth_user: anon
`,
    );
    nats = await startNats({ args: ['-c', conf] });
    nc = await connect({ servers: nats.url });
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'AUTH', subjects: ['ferry.chunks.>'] });
  });

  after(async () => {
    await nc?.close();
    await nats?.stop();
    await dir?.cleanup();
  });

  /** Ships one chunk once `ready(shipper)` holds (default: connected). */
  async function shipOne(agentId: string, creds: Record<string, unknown>, ready = (s: NatsShipper) => s.health().state === 'connected'): Promise<{ result: unknown; detail: string }> {
    const cfg = agentConfigSchema.parse({ inputs: [{ paths: ['/x'], topic: 't' }], transport: { nats: { servers: [nats.url], ...creds } } }).transport.nats!;
    const p = parts(nats.url, agentId);
    const shipper = new NatsShipper({ config: cfg, agentId, log, registry: createRegistry({ defaultMetrics: false }) });
    try {
      p.append(1);
      await shipper.start();
      await waitFor(() => ready(shipper), 10_000, `the shipper to be ready (${shipper.health().detail})`);
      const [result] = await shipper.send(p.spool.readAfter(0, 1));
      return { result, detail: shipper.health().detail };
    } finally {
      await shipper.stop(Date.now() + 1000);
      await p.close();
    }
  }

  it('connects with user and password and publishes', async () => {
    const { result } = await shipOne('auth-user', { user: 'ferry', pass: 's3cret' });
    assert.equal(result, 'ok');
  });

  it('connects with an nkey seed file and publishes', async () => {
    const { result } = await shipOne('auth-nkey', { nkeySeedFile: seedFile });
    assert.equal(result, 'ok');
  });

  it('stays disconnected with a wrong password, answering retry and saying why', async () => {
    const { result, detail } = await shipOne('auth-bad', { user: 'ferry', pass: 'wrong' }, (s) => /auth/i.test(s.health().detail));
    assert.ok(typeof result === 'object' && result !== null && 'retry' in result, `expected a retry, got ${JSON.stringify(result)}`);
    assert.match(detail, /disconnected.*(auth|Authorization)/i);
  });

  it('refuses to start when the nkey seed file is missing or holds no user seed, naming the key', async () => {
    const missing = new NatsShipper({ config: natsConfigWith({ nkeySeedFile: join(dir.path, 'nope.nk') }), agentId: 'x', log, registry: createRegistry({ defaultMetrics: false }) });
    await assert.rejects(() => missing.start(), /transport\.nats\.nkeySeedFile: cannot read .*nope\.nk/);
    const notSeed = join(dir.path, 'bad.nk');
    writeFileSync(notSeed, 'hello\n');
    const bad = new NatsShipper({ config: natsConfigWith({ nkeySeedFile: notSeed }), agentId: 'x', log, registry: createRegistry({ defaultMetrics: false }) });
    await assert.rejects(() => bad.start(), /transport\.nats\.nkeySeedFile: .* does not hold a user nkey seed/);
  });

  function natsConfigWith(extra: Record<string, unknown>) {
    return agentConfigSchema.parse({ inputs: [{ paths: ['/x'], topic: 't' }], transport: { nats: { servers: [nats.url], ...extra } } }).transport.nats!;
  }
});
