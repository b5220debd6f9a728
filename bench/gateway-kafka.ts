// Benchmark: JetStream -> ferry-gateway (JetStreamInput + Kafka sink) -> Kafka.
//
//   npm run build && node dist/bench/gateway-kafka.js [--lines 300000] [--line-bytes 200]
//        [--chunk-lines 500] [--fetch-batch N] [--queued-bytes 16MiB] [--modes exactly-once,at-least-once] [--drivers kafkajs,librdkafka]
//
// For each driver and delivery mode: start a fresh nats-server and Kafka (test harness), pre-load the
// stream with encoded chunks, then start the gateway and time the drain until JetStream is
// empty (every chunk acked, so every record acknowledged by Kafka). Reported: records/s and
// MB/s of line bytes, the gateway's CPU seconds (this process: the driver only polls while
// draining) and its peak RSS. The Kafka topic's end offset is checked against the line count
// (at-least-once may exceed it only if something was redelivered). Measured, not asserted.
import { parseArgs } from 'node:util';
import { connect } from '@nats-io/transport-node';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { startKafka, startNats } from '../test/harness/index.js';
import { gatewayConfigSchema } from '../gateway/config.js';
import { createKafkaSink } from '../gateway/sinks/kafka/sink.js';
import { JetStreamInput } from '../gateway/inputs/jetstream/input.js';
import { ensureJetStream } from '../gateway/inputs/jetstream/setup.js';
import { createRegistry } from '../shared/metrics.js';
import { silentLogger } from '../shared/log.js';
import { encodeChunk, type ChunkHeader, type RecordEntry } from '../shared/chunk/codec.js';

const { values: args } = parseArgs({
  options: {
    lines: { type: 'string', default: '300000' },
    'line-bytes': { type: 'string', default: '200' },
    'chunk-lines': { type: 'string', default: '500' },
    modes: { type: 'string', default: 'exactly-once,at-least-once' },
    'fetch-batch': { type: 'string' },
    'queued-bytes': { type: 'string' },
    drivers: { type: 'string', default: gatewayConfigSchema.shape.kafka.shape.driver.unwrap().options.join(',') },
  },
});
const LINES = Number(args.lines);
const LINE_BYTES = Number(args['line-bytes']);
const CHUNK_LINES = Number(args['chunk-lines']);
const MODES = args.modes.split(',') as Array<'exactly-once' | 'at-least-once'>;
const DRIVERS = args.drivers.split(',');

/** The encoded chunks, made one at a time (a backlog of millions of lines never sits in this process). */
function* chunks(): Generator<Buffer> {
  const line = Buffer.alloc(LINE_BYTES, 0x61);
  let offset = 0;
  for (let seq = 1, left = LINES; left > 0; seq++) {
    const n = Math.min(CHUNK_LINES, left);
    left -= n;
    const data: Buffer[] = [];
    const entries: RecordEntry[] = [];
    for (let i = 0; i < n; i++) {
      const l = Buffer.from(line);
      l.write(`${seq}:${i} `);
      data.push(l);
      entries.push({ gap: i === 0 ? 0 : 1, length: l.length, flags: 0 });
    }
    const header: ChunkHeader = {
      agentId: 'bench-agent', seq, host: 'bench-host', path: '/var/log/bench.log', topic: 'bench',
      file: { dev: '1', ino: '1', fingerprint: 'f' }, offsetStart: offset, offsetEnd: offset + n * (LINE_BYTES + 1),
      lineCount: n, readAtMs: Date.now(),
    };
    offset = header.offsetEnd;
    yield encodeChunk(header, entries, data);
  }
}

async function run(driver: string, mode: 'exactly-once' | 'at-least-once'): Promise<Record<string, number | string>> {
  const [kafka, nats] = await Promise.all([startKafka(), startNats()]);
  try {
    // The broker may answer metadata before it can create topics: one retry.
    await kafka.createTopic('bench').catch(async () => {
      await new Promise((r) => setTimeout(r, 2000));
      await kafka.createTopic('bench');
    });
    const config = gatewayConfigSchema.parse({ id: 'bench-gw', kafka: { brokers: kafka.brokers, delivery: mode, driver }, nats: { servers: [nats.url], ...(args['fetch-batch'] ? { fetchBatch: Number(args['fetch-batch']) } : {}), ...(args['queued-bytes'] ? { maxQueuedBytes: args['queued-bytes'] } : {}) } });
    const nc = await connect({ servers: nats.url });
    const jsm = await jetstreamManager(nc);
    await ensureJetStream(jsm, config.nats!, silentLogger());
    const js = jetstream(nc);
    const window: Array<Promise<unknown>> = [];
    let published = 0;
    let windowBytes = 0;
    for (const c of chunks()) {
      window.push(js.publish('ferry.chunks.bench-agent', c, { msgID: `bench-agent/${++published}` }));
      windowBytes += c.length;
      // Bounded by bytes too: large chunks would otherwise outlast the publish timeout.
      if (window.length >= 256 || windowBytes >= 16e6) {
        await Promise.all(window.splice(0));
        windowBytes = 0;
      }
    }
    await Promise.all(window);
    const loaded = (await jsm.streams.info(config.nats!.stream)).state;

    const registry = createRegistry({ defaultMetrics: false });
    const log = silentLogger();
    if (global.gc) global.gc();
    const rssBefore = process.memoryUsage().rss;
    const externalBefore = process.memoryUsage().external;
    let peakRss = rssBefore;
    const peak = { heapUsed: 0, external: 0, arrayBuffers: 0 };
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      peakRss = Math.max(peakRss, m.rss);
      for (const k of ['heapUsed', 'external', 'arrayBuffers'] as const) peak[k] = Math.max(peak[k], m[k]);
    }, 50);
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const sink = createKafkaSink(config.kafka, { gatewayId: 'bench-gw', log, registry });
    await sink.start();
    const input = new JetStreamInput({ config: config.nats!, sink, log, registry });
    await input.start();
    // RSS over the drain, per tenth of the stream drained: flat if memory is bounded by what is
    // in flight rather than by the backlog.
    const rssByTenth: number[] = [];
    for (;;) {
      const st = (await jsm.streams.info(config.nats!.stream)).state;
      const tenth = Math.min(9, Math.floor((10 * (loaded.messages - st.messages)) / loaded.messages));
      rssByTenth[tenth] = Math.max(rssByTenth[tenth] ?? 0, Math.round(process.memoryUsage().rss / 1e6));
      if (st.messages === 0) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpu = process.cpuUsage(cpu0);
    clearInterval(sampler);
    await input.stop(Date.now() + 5000);
    await sink.stop(Date.now() + 5000);
    await nc.close();

    const admin = kafka.client().admin();
    await admin.connect();
    const offsets = await admin.fetchTopicOffsets('bench');
    await admin.disconnect();
    // exactly-once: each transaction adds one commit marker per partition it touched.
    const kafkaOffsets = offsets.reduce((a, p) => a + Number(p.high), 0);
    const mb = (LINES * LINE_BYTES) / 1e6;
    return {
      driver,
      mode,
      lines: LINES,
      chunks: published,
      streamBytes: loaded.bytes,
      seconds: +seconds.toFixed(2),
      recordsPerSec: Math.round(LINES / seconds),
      MBPerSec: +(mb / seconds).toFixed(1),
      cpuSeconds: +((cpu.user + cpu.system) / 1e6).toFixed(2),
      cpuMicrosPerRecord: +((cpu.user + cpu.system) / LINES).toFixed(1),
      peakRssMB: Math.round(peakRss / 1e6),
      rssGrowthMB: Math.round((peakRss - rssBefore) / 1e6),
      // Where the peak is: the JS heap, and memory outside it held by JS objects (Buffers).
      peakHeapMB: Math.round(peak.heapUsed / 1e6),
      peakExternalMB: Math.round(peak.external / 1e6),
      externalBeforeMB: Math.round(externalBefore / 1e6),
      kafkaEndOffset: kafkaOffsets,
      rssMBByTenth: Array.from(rssByTenth, (v) => v ?? '-').join(' '),
    };
  } finally {
    await nats.stop();
    await kafka.destroy();
  }
}

const results = [];
for (const driver of DRIVERS) {
  for (const mode of MODES) {
    const r = await run(driver, mode);
    console.log(JSON.stringify(r));
    results.push(r);
  }
}
console.table(results);
