// The whole agent (tailer -> spool -> NATS shipper) against a real nats-server started with a
// small max_payload: lines longer than it reach JetStream as continued pieces, every chunk fits.
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { jetstreamManager, type JetStreamManager } from '@nats-io/jetstream';
import { startNats, tempDir, waitFor, type NatsServer, type TempDir } from '../harness/index.js';
import { Agent } from '../../agent/run.js';
import { agentConfigSchema } from '../../agent/config.js';
import { META_MAX_CHUNK_BYTES, natsMaxChunkBytes } from '../../agent/limits.js';
import { Spool } from '../../agent/spool/spool.js';
import { Pump } from '../../agent/shippers/pump.js';
import { NatsShipper } from '../../agent/shippers/nats/shipper.js';
import { RecordFlag, decodeChunk } from '../../shared/chunk/codec.js';
import { silentLogger } from '../../shared/log.js';
import { createRegistry } from '../../shared/metrics.js';

const MAX_PAYLOAD = 64 * 1024;

function longLine(n: number, seed: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = 0x41 + ((i + seed) % 26);
  return b;
}

/** The stream's records in order, joined back into lines by their Continues flags; and the largest message. */
async function linesInStream(jsm: JetStreamManager): Promise<{ lines: Buffer[]; pieces: number; largest: number }> {
  const info = await jsm.streams.info('FERRY_CHUNKS');
  const lines: Buffer[] = [];
  let open: Buffer[] = [];
  let pieces = 0;
  let largest = 0;
  for (let s = info.state.first_seq; s <= info.state.last_seq && info.state.messages > 0; s++) {
    const m = await jsm.streams.getMessage('FERRY_CHUNKS', { seq: s });
    if (!m) continue;
    largest = Math.max(largest, m.data.length);
    for (const r of decodeChunk(m.data).records) {
      open.push(Buffer.from(r.value));
      if (r.flags & RecordFlag.Continues) {
        pieces++;
        continue;
      }
      lines.push(Buffer.concat(open));
      open = [];
    }
  }
  assert.equal(open.length, 0, 'no line ends in a continued piece');
  return { lines, pieces, largest };
}

describe('agent records and chunks vs the NATS server\'s max_payload', () => {
  let nats: NatsServer;
  let nc: NatsConnection;
  let jsm: JetStreamManager;
  let dir: TempDir;

  before(async () => {
    nats = await startNats({ maxPayloadBytes: MAX_PAYLOAD });
    nc = await connect({ servers: nats.url });
    assert.equal(nc.info?.max_payload, MAX_PAYLOAD, 'the harness started the server with the small max_payload');
    jsm = await jetstreamManager(nc);
    await jsm.streams.add({ name: 'FERRY_CHUNKS', subjects: ['ferry.chunks.>'] });
    dir = tempDir('agent-limits');
    mkdirSync(join(dir.path, 'logs'));
  });

  after(async () => {
    await nc?.close();
    await nats?.stop();
    await dir?.cleanup();
  });

  const config = () =>
    agentConfigSchema.parse({
      id: 'lim-01',
      dataDir: join(dir.path, 'data'),
      inputs: [{ paths: [join(dir.path, 'logs', '*.log')], topic: 't' }],
      transport: { nats: { servers: [nats.url], publishTimeoutMs: 5000 } },
      chunk: { maxDelayMs: 50 },
      tail: { scanIntervalMs: 100, pollIntervalMs: 50 },
      retry: { initialMs: 50, maxMs: 500 },
      heartbeatIntervalMs: 1000,
      monitor: { enabled: false },
    });

  const file = () => join(dir.path, 'logs', 'app.log');
  const written: Buffer[] = [];
  const write = (lines: Buffer[]): void => {
    written.push(...lines);
    appendFileSync(file(), Buffer.concat(lines.flatMap((l) => [l, Buffer.from('\n')])));
  };
  const short = (from: number, n: number): Buffer[] => Array.from({ length: n }, (_, i) => Buffer.from(`line ${from + i}`));

  it('cuts lines longer than max_payload into continued pieces: every byte reaches JetStream and the pieces join back to the lines', async () => {
    const agent = await Agent.start({ config: config(), log: silentLogger(), registry: createRegistry({ defaultMetrics: false }) });
    try {
      await waitFor(() => agent.status().transport.state === 'connected', 10_000, 'the agent to connect to NATS');
      writeFileSync(file(), '');
      write([...short(0, 50), longLine(300_000, 1), ...short(50, 50), longLine(100_000, 2), ...short(100, 50)]);
      await waitFor(async () => (await linesInStream(jsm)).lines.length === written.length, 20_000, 'every line in JetStream', { intervalMs: 200 });
      const got = await linesInStream(jsm);
      assert.ok(got.lines.every((l, i) => l.equals(written[i]!)), 'the lines joined from the stream are the lines written');
      assert.ok(got.pieces >= 6, `${got.pieces} continued pieces`);
      assert.ok(got.largest <= MAX_PAYLOAD, `a message of ${got.largest} bytes`);
      assert.equal(agent.status().shipping?.blocked, null);
    } finally {
      await agent.stop();
    }
  });

  it('keeps a chunk already spooled that is too large for the server, blocking visibly behind it; the chunks after it wait', async () => {
    const d = tempDir('agent-limits-big');
    const registry = createRegistry({ defaultMetrics: false });
    const spool = Spool.open({ dataDir: d.path, maxBytes: 64 * 1024 * 1024, onFull: 'pause', synchronous: 'normal', log: silentLogger(), registry, seqBase: 0 });
    const learned: number[] = [];
    const shipper = new NatsShipper({ config: config().transport.nats!, agentId: 'big-01', log: silentLogger(), registry, onMaxChunkBytes: (n) => learned.push(n) });
    const pump = new Pump({ spool, shipper, maxInFlight: 4, retry: { initialMs: 20, maxMs: 200, multiplier: 2, jitter: 0 }, log: silentLogger(), registry });
    const identity = { dev: '1', ino: '2', fingerprint: 'ab' };
    let offset = 0;
    const append = (value: Buffer): void => {
      const start = offset;
      offset += value.length + 1;
      spool.append(
        { header: { agentId: 'big-01', host: 'h', path: '/var/log/app.log', topic: 't', file: identity, offsetStart: start, offsetEnd: offset, lineCount: 1, readAtMs: Date.now() }, entries: [{ gap: 0, length: value.length, flags: 0 }], data: value },
        { path: '/var/log/app.log', identity, offset, input: 0, updatedAtMs: Date.now() },
      );
    };
    try {
      append(longLine(MAX_PAYLOAD, 0)); // cut before the limit was known: too large with its header
      append(Buffer.from('after'));
      await shipper.start();
      pump.start();
      await waitFor(() => pump.status().blocked !== null, 10_000, 'the pump to block on the too-large chunk');
      assert.deepEqual(learned, [natsMaxChunkBytes(MAX_PAYLOAD)], 'the shipper announced the server\'s limit');
      assert.match(pump.status().blocked!.error, /more than the NATS server's max_payload of 65536 takes/);
      assert.equal(spool.stats().chunks, 2, 'the chunk is never dropped, the next one waits');
      assert.match(await registry.metrics(), /^ferry_ship_blocked 1$/m);
    } finally {
      await pump.stop(Date.now() + 2000);
      await shipper.stop(Date.now() + 2000);
      spool.close();
      await d.cleanup();
    }
  });

  it('at the next start cuts with the limit learned before (kept in the spool) while NATS is down', async () => {
    const ro = Spool.openReadOnly(join(dir.path, 'data'));
    const stored = ro.meta(META_MAX_CHUNK_BYTES);
    ro.close();
    assert.equal((JSON.parse(stored ?? '{}') as { maxChunkBytes?: number }).maxChunkBytes, natsMaxChunkBytes(MAX_PAYLOAD));
    await nats.kill();
    write([...short(150, 10), longLine(200_000, 3), ...short(160, 10)]);
    const agent = await Agent.start({ config: config(), log: silentLogger(), registry: createRegistry({ defaultMetrics: false }) });
    try {
      await waitFor(() => agent.status().files[0]?.lagBytes === 0 && agent.status().spool.chunks > 0, 10_000, 'the new lines to be spooled while NATS is down');
      await nats.restart();
      await waitFor(() => agent.status().spool.chunks === 0, 20_000, 'the spool to drain once NATS is back', { intervalMs: 200 });
      // The test's own connection reconnects on its own schedule: errors meanwhile count as "not yet".
      const got = await waitFor(async () => {
        const g = await linesInStream(jsm);
        return g.lines.length === written.length ? g : undefined;
      }, 20_000, 'every line in JetStream', { intervalMs: 200 });
      assert.ok(got.lines.every((l, i) => l.equals(written[i]!)), 'the lines joined from the stream are the lines written');
      assert.ok(got.largest <= MAX_PAYLOAD);
      assert.equal(agent.status().shipping?.blocked, null);
    } finally {
      await agent.stop();
    }
  });
});
