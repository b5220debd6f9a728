// A real single-node Apache Kafka (KRaft, broker+controller in one JVM) for tests.
//
// Layout of `dataDir` (one temp folder per broker, removed by `destroy()`):
//   server.properties   the broker config (ports fixed at the first start)
//   log4j2.properties   sends the broker's log to broker.log
//   broker.log          the broker's log; its tail is part of every start error
//   kraft/              log.dirs: the metadata log and the topics' partitions
// Ready means the admin API answers `describeCluster()` AND a topic can be created (with a
// leader) and deleted: a KRaft broker answers metadata before its controller can do that.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, openSync, readSync, rmSync, writeFileSync, fstatSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { Kafka, logLevel, type Admin, type KafkaConfig, type KafkaMessage } from 'kafkajs';
import { ServerOperationError, ServerStartError, WaitTimeoutError } from './errors.js';
import { findJava, findKafkaLibs } from './locate.js';
import { freePort, keepAlive, lastLines, rejectOnExit, spawnTracked, terminate, type Child } from './process.js';
import { tempDir, type TempDir } from './temp.js';
import { waitFor } from './wait.js';

export interface KafkaOptions {
  /** `auto.create.topics.enable`. Default false: tests create their topics. */
  autoCreateTopics?: boolean;
  /** Extra or overriding `server.properties` entries. */
  serverProperties?: Record<string, string>;
  /** JVM flags replacing the defaults (heap, GC, JIT); also `$FERRY_KAFKA_JVM_OPTS`. */
  jvmArgs?: string[];
  /** How long a start may take, per attempt. Default 90 s. */
  startTimeoutMs?: number;
}

export interface KafkaRecordOut {
  topic: string;
  partition: number;
  offset: number;
  key: Buffer | null;
  /** The value; a null value (tombstone) reads as an empty Buffer with `valueIsNull` set. */
  value: Buffer;
  valueIsNull: boolean;
  /** Headers decoded as UTF-8; for a key given twice, the last value. */
  headers: Record<string, string>;
  /** Headers as sent: in order, duplicates kept, bytes untouched. */
  rawHeaders: Array<[string, Buffer]>;
  timestamp: number;
}

export interface ReadAllOptions {
  /** Default `read_committed` (what Ferry promises exactly-once to). */
  isolation?: 'read_committed' | 'read_uncommitted';
  /**
   * Wait until at least this many records are there (the topic may not exist yet), then read
   * on to the end offsets of that moment, so duplicates past `expect` are returned too.
   * Without it: read up to the end offsets found at the call (the last stable offsets for
   * read_committed).
   */
  expect?: number;
  /** Default 30 s. On timeout the error says how far each partition got. */
  timeoutMs?: number;
}

export interface CreateTopicOptions {
  /** Default 1. */
  partitions?: number;
  /** Topic configs, e.g. `{ 'max.message.bytes': '2097152' }`. */
  config?: Record<string, string>;
}

export interface KafkaBroker extends AsyncDisposable {
  /** `['127.0.0.1:<port>']` */
  readonly brokers: string[];
  /** `127.0.0.1:<port>` */
  readonly bootstrap: string;
  readonly port: number;
  readonly controllerPort: number;
  /** The broker's temp folder (layout at the top of kafka.ts). */
  readonly dataDir: string;
  readonly running: boolean;
  /** The last lines of broker.log, then of the JVM's own output. */
  logTail(lines?: number): string;
  /** A kafkajs client for this broker, quiet unless `logLevel` is given. */
  client(config?: Omit<KafkaConfig, 'brokers'>): Kafka;
  /** Graceful stop (SIGTERM), keeping the data. Throws if it had to SIGKILL after 30 s. */
  stop(): Promise<void>;
  /** SIGKILL, keeping the data. */
  kill(): Promise<void>;
  /** Starts it again after stop/kill, on the same ports with the same data. */
  start(): Promise<void>;
  /** Kills it and removes its data. Safe to call twice; what `await using` calls. */
  destroy(): Promise<void>;
  createTopic(name: string, opts?: CreateTopicOptions): Promise<void>;
  /** Every record of every partition from the beginning, sorted by partition then offset. */
  readAll(topic: string, opts?: ReadAllOptions): Promise<KafkaRecordOut[]>;
}

const DEFAULT_JVM_ARGS = [
  // Measured on 2 cores: ~4.0 s to "started" with G1 and full JIT, ~2.5 s with these.
  '-Xms256m',
  '-Xmx512m',
  '-XX:+UseSerialGC',
  '-XX:TieredStopAtLevel=1',
  '-Xshare:auto',
  '-Djava.awt.headless=true',
];

function jvmArgs(opts: KafkaOptions): string[] {
  if (opts.jvmArgs) return opts.jvmArgs;
  const env = process.env.FERRY_KAFKA_JVM_OPTS?.trim();
  return env ? env.split(/\s+/) : DEFAULT_JVM_ARGS;
}

function readFileTail(path: string, lines: number, maxBytes = 64 * 1024): string {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return '';
  }
  try {
    const size = fstatSync(fd).size;
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, size - length);
    return lastLines(buf.toString('utf8'), lines);
  } finally {
    closeSync(fd);
  }
}

function quietClient(brokers: string[], config: Omit<KafkaConfig, 'brokers'> = {}): Kafka {
  return new Kafka({ clientId: 'ferry-harness', logLevel: logLevel.NOTHING, ...config, brokers });
}

async function withAdmin<T>(kafka: Kafka, fn: (admin: Admin) => Promise<T>): Promise<T> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return await fn(admin);
  } finally {
    await admin.disconnect();
  }
}

function toRecord(topic: string, partition: number, m: KafkaMessage): KafkaRecordOut {
  const headers: Record<string, string> = {};
  const rawHeaders: Array<[string, Buffer]> = [];
  for (const [name, v] of Object.entries(m.headers ?? {})) {
    if (v === undefined) continue;
    for (const one of Array.isArray(v) ? v : [v]) {
      const buf = typeof one === 'string' ? Buffer.from(one) : one;
      rawHeaders.push([name, buf]);
      headers[name] = buf.toString('utf8');
    }
  }
  return {
    topic,
    partition,
    offset: Number(m.offset),
    key: m.key,
    value: m.value ?? Buffer.alloc(0),
    valueIsNull: m.value === null,
    headers,
    rawHeaders,
    timestamp: Number(m.timestamp),
  };
}

function java(javaBin: string, args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(javaBin, args, { timeout: timeoutMs, maxBuffer: 4 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) {
        const how = err.killed ? `was killed after ${timeoutMs} ms` : `failed (exit code ${String(err.code)})`;
        reject(new ServerStartError(`${javaBin} ${args.join(' ')} ${how}:\n${lastLines(stdout + stderr, 30)}`, { cause: err }));
      }
      else resolve(stdout + stderr);
    });
  });
}

class KafkaBrokerImpl implements KafkaBroker {
  private child: Child | undefined;
  private destroyed = false;
  port = 0;
  controllerPort = 0;

  constructor(
    private readonly dir: TempDir,
    private readonly javaBin: string,
    private readonly libs: string,
    private readonly opts: KafkaOptions,
  ) {}

  get dataDir(): string {
    return this.dir.path;
  }
  get bootstrap(): string {
    return `127.0.0.1:${this.port}`;
  }
  get brokers(): string[] {
    return [this.bootstrap];
  }
  get running(): boolean {
    return this.child?.running() ?? false;
  }
  private get logFile(): string {
    return join(this.dataDir, 'broker.log');
  }
  private get propsFile(): string {
    return join(this.dataDir, 'server.properties');
  }
  private get log4jFile(): string {
    return join(this.dataDir, 'log4j2.properties');
  }
  private get classpath(): string {
    return join(this.libs, '*');
  }

  logTail(lines = 40): string {
    const jvm = this.child?.output.text(lines) ?? '';
    return `--- ${this.logFile} ---\n${readFileTail(this.logFile, lines)}` + (jvm ? `\n--- JVM output ---\n${jvm}` : '');
  }

  client(config: Omit<KafkaConfig, 'brokers'> = {}): Kafka {
    return quietClient(this.brokers, { clientId: 'ferry-test', ...config });
  }

  /** Writes the config for fresh ports and formats an empty kraft/ folder. */
  async prepare(): Promise<void> {
    this.port = await freePort();
    do this.controllerPort = await freePort();
    while (this.controllerPort === this.port);
    const kraft = join(this.dataDir, 'kraft');
    rmSync(kraft, { recursive: true, force: true });
    mkdirSync(kraft);
    const props: Record<string, string> = {
      'process.roles': 'broker,controller',
      'node.id': '1',
      'controller.quorum.voters': `1@127.0.0.1:${this.controllerPort}`,
      listeners: `PLAINTEXT://127.0.0.1:${this.port},CONTROLLER://127.0.0.1:${this.controllerPort}`,
      'advertised.listeners': `PLAINTEXT://127.0.0.1:${this.port}`,
      'controller.listener.names': 'CONTROLLER',
      'listener.security.protocol.map': 'CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
      'inter.broker.listener.name': 'PLAINTEXT',
      'log.dirs': kraft,
      'auto.create.topics.enable': String(this.opts.autoCreateTopics ?? false),
      'num.partitions': '1',
      'offsets.topic.replication.factor': '1',
      'transaction.state.log.replication.factor': '1',
      'transaction.state.log.min.isr': '1',
      'group.initial.rebalance.delay.ms': '0',
      // One partition each instead of 50: the first consumer group or transaction of a test
      // then waits ~0.5 s instead of 1-3 s for Kafka to create these topics.
      'offsets.topic.num.partitions': '1',
      'transaction.state.log.num.partitions': '1',
      ...this.opts.serverProperties,
    };
    writeFileSync(this.propsFile, Object.entries(props).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');
    writeFileSync(
      this.log4jFile,
      [
        'status = warn',
        'appender.file.type = File',
        'appender.file.name = file',
        `appender.file.fileName = ${this.logFile}`,
        'appender.file.layout.type = PatternLayout',
        'appender.file.layout.pattern = [%d] %p %m (%c)%n',
        'rootLogger.level = info',
        'rootLogger.appenderRef.file.ref = file',
        // Per-request noise that buries what matters in the tail.
        'logger.request.name = kafka.request.logger',
        'logger.request.level = warn',
        '',
      ].join('\n'),
    );
    // Like Kafka's Uuid.randomUuid(): never an id starting with '-', which argparse takes for a flag.
    let clusterId: string;
    do clusterId = randomBytes(16).toString('base64url');
    while (clusterId.startsWith('-'));
    await java(
      this.javaBin,
      ['-Xmx256m', '-XX:TieredStopAtLevel=1', `-Dlog4j2.configurationFile=${this.log4jFile}`, '-cp', this.classpath,
        'kafka.tools.StorageTool', 'format', '-t', clusterId, '-c', this.propsFile],
      60_000,
    );
  }

  private bindFailed(): boolean {
    return /BindException|Address already in use/.test(readFileTail(this.logFile, 200) + (this.child?.output.text(200) ?? ''));
  }

  /** One attempt to run the broker and see it ready. */
  async launch(): Promise<void> {
    if (this.destroyed) throw new ServerOperationError('this Kafka broker was destroyed; start a new one');
    if (this.running) throw new ServerOperationError(`Kafka already runs on ${this.bootstrap}`);
    const timeoutMs = this.opts.startTimeoutMs ?? 90_000;
    const started = Date.now();
    const args = [...jvmArgs(this.opts), `-Dlog4j2.configurationFile=${this.log4jFile}`, '-cp', this.classpath, 'kafka.Kafka', this.propsFile];
    const child = await spawnTracked(this.javaBin, args, { cwd: this.dataDir });
    this.child = child;
    const exited = rejectOnExit(
      child,
      ({ code, signal }) =>
        new ServerStartError(
          `Kafka exited while starting (${signal ?? `code ${code}`}) on ${this.bootstrap}` +
            `${this.bindFailed() ? ' because a port was taken' : ''}\n${this.logTail()}`,
        ),
    );
    const ac = new AbortController();
    try {
      await Promise.race([
        waitFor(() => this.ready(), timeoutMs, `Kafka on ${this.bootstrap} to answer describeCluster and create a topic`, {
          signal: ac.signal,
          intervalMs: 100,
          maxIntervalMs: 500,
        }),
        exited,
      ]);
    } catch (err) {
      await terminate(child, 'SIGKILL', 0);
      if (err instanceof WaitTimeoutError) throw new ServerStartError(`${err.message}\n${this.logTail()}`, { cause: err });
      throw err;
    } finally {
      ac.abort();
    }
    this.startMs = Date.now() - started;
  }

  /** How long the last start took until ready, for reports. */
  startMs = 0;

  private async ready(): Promise<boolean> {
    const kafka = quietClient(this.brokers, { connectionTimeout: 1000, requestTimeout: 5000, retry: { retries: 0 } });
    return withAdmin(kafka, async (admin) => {
      const cluster = await admin.describeCluster();
      if (cluster.brokers.length === 0) return false;
      const topic = `__ferry_ready_${randomBytes(4).toString('hex')}`;
      try {
        return await admin.createTopics({ topics: [{ topic, numPartitions: 1, replicationFactor: 1 }], waitForLeaders: true, timeout: 5000 });
      } finally {
        await admin.deleteTopics({ topics: [topic], timeout: 5000 }).catch(() => undefined);
      }
    });
  }

  async start(): Promise<void> {
    await this.launch();
  }

  async stop(): Promise<void> {
    if (!this.child) return;
    if (await terminate(this.child, 'SIGTERM', 30_000)) {
      throw new ServerOperationError(`Kafka did not stop within 30 s of SIGTERM and was killed\n${this.logTail()}`);
    }
  }

  async kill(): Promise<void> {
    if (this.child) await terminate(this.child, 'SIGKILL', 0);
  }

  async destroy(): Promise<void> {
    // The data goes away, so there is nothing to shut down gracefully for.
    await this.kill();
    this.destroyed = true;
    await keepAlive(this.dir.cleanup());
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.destroy();
  }

  async createTopic(name: string, opts: CreateTopicOptions = {}): Promise<void> {
    const partitions = opts.partitions ?? 1;
    await withAdmin(this.client(), async (admin) => {
      const created = await admin.createTopics({
        topics: [
          {
            topic: name,
            numPartitions: partitions,
            replicationFactor: 1,
            configEntries: Object.entries(opts.config ?? {}).map(([n, value]) => ({ name: n, value })),
          },
        ],
        // kafkajs' own wait gives up on UNKNOWN_TOPIC_OR_PARTITION, which a KRaft broker answers
        // for a moment after the create: wait for every partition's leader here instead.
        waitForLeaders: false,
        timeout: 30_000,
      });
      if (!created) throw new ServerOperationError(`topic "${name}" already exists`);
      await waitFor(
        async () => {
          const meta = await admin.fetchTopicMetadata({ topics: [name] });
          const parts = meta.topics[0]?.partitions ?? [];
          if (parts.length !== partitions || !parts.every((p) => p.leader >= 0)) return false;
          // The leader answers offsets only once it has loaded the partition.
          return (await admin.fetchTopicOffsets(name)).length === partitions;
        },
        30_000,
        `every partition of the new topic "${name}" to have a leader that answers`,
      );
    });
  }

  async readAll(topic: string, opts: ReadAllOptions = {}): Promise<KafkaRecordOut[]> {
    const isolation = opts.isolation ?? 'read_committed';
    const timeoutMs = opts.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    const left = (): number => Math.max(1, deadline - Date.now());
    const kafka = this.client();
    const admin = kafka.admin();
    await admin.connect();
    const groupId = `ferry-harness-read-${randomBytes(6).toString('hex')}`;
    const consumer = kafka.consumer({
      groupId,
      readUncommitted: isolation === 'read_uncommitted',
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 100,
      retry: { retries: 5 },
    });
    const records: KafkaRecordOut[] = [];
    // Next offset to read, and the offset to reach, per partition.
    const position = new Map<number, number>();
    const target = new Map<number, number>();
    const endOffsets = async (): Promise<void> => {
      for (const p of await admin.fetchTopicOffsets(topic)) {
        // The admin lists offsets read_committed: high is the last stable offset.
        target.set(p.partition, Math.max(target.get(p.partition) ?? 0, Number(p.high)));
        if (!position.has(p.partition)) position.set(p.partition, Number(p.low));
      }
    };
    const progress = (): string =>
      [...target].map(([p, t]) => `partition ${p} at ${position.get(p) ?? '?'} of ${t}`).join(', ') || 'no partitions';

    try {
      const exists = async (): Promise<boolean> => (await admin.listTopics()).includes(topic);
      if (!(await exists())) {
        if (opts.expect === undefined) throw new ServerOperationError(`cannot read topic "${topic}": it does not exist`);
        await waitFor(exists, left(), `topic "${topic}" to exist`);
      }
      await endOffsets();

      let settle: (err?: Error) => void = () => undefined;
      const finished = new Promise<void>((resolve, reject) => {
        settle = (err) => (err === undefined ? resolve() : reject(err));
      });
      // It may settle before the race below awaits it: mark the rejection as handled (the race
      // still sees it).
      finished.catch(() => undefined);
      let refreshing = false;
      let refreshed = opts.expect === undefined;
      const reached = (): boolean => [...target].every(([p, t]) => (position.get(p) ?? 0) >= t);
      const check = (): void => {
        if (opts.expect !== undefined && records.length < opts.expect) return;
        if (!refreshed) {
          // Enough records: now read on to what the topic holds at this moment.
          if (refreshing) return;
          refreshing = true;
          endOffsets().then(
            () => {
              refreshed = true;
              check();
            },
            (err: unknown) => settle(err instanceof Error ? err : new ServerOperationError(`cannot list the offsets of "${topic}"`, { cause: err })),
          );
          return;
        }
        if (reached()) settle();
      };

      let lastCrash: Error | undefined;
      consumer.on(consumer.events.CRASH, ({ payload }) => {
        lastCrash = payload.error;
        if (!payload.restart) settle(payload.error);
      });
      consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
        position.set(payload.partition, Math.max(position.get(payload.partition) ?? 0, Number(payload.lastOffset) + 1));
        if (isolation === 'read_uncommitted') {
          target.set(payload.partition, Math.max(target.get(payload.partition) ?? 0, Number(payload.highWatermark)));
        }
        check();
      });
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
      await consumer.run({
        autoCommit: false,
        eachBatch: ({ batch }) => {
          const from = position.get(batch.partition) ?? 0;
          for (const m of batch.messages) {
            // A rejoin re-reads from the start (nothing is committed): keep each offset once.
            if (Number(m.offset) >= from) records.push(toRecord(topic, batch.partition, m));
          }
          return Promise.resolve();
        },
      });
      check();

      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          const want = opts.expect === undefined ? '' : ` (expected at least ${opts.expect})`;
          reject(
            new WaitTimeoutError(
              `timed out after ${timeoutMs}ms reading topic "${topic}" (${isolation}): got ${records.length} records${want}; ${progress()}` +
                (lastCrash ? `; consumer error: ${lastCrash.message}` : ''),
              lastCrash ? { cause: lastCrash } : undefined,
            ),
          );
        }, left());
      });
      try {
        await Promise.race([finished, timeout]);
      } finally {
        clearTimeout(timer);
      }
    } finally {
      await consumer.disconnect().catch(() => undefined);
      await admin.deleteGroups([groupId]).catch(() => undefined);
      await admin.disconnect();
    }
    return records.sort((a, b) => a.partition - b.partition || a.offset - b.offset);
  }
}

/**
 * Starts a single-node KRaft Kafka on free ports with its own temp folder. If a port was taken
 * between choosing and binding it, it retries on new ports (up to 3 times).
 */
export async function startKafka(opts: KafkaOptions = {}): Promise<KafkaBroker> {
  const libs = findKafkaLibs();
  const javaBin = findJava();
  const dir = tempDir('kafka');
  const broker = new KafkaBrokerImpl(dir, javaBin, libs, opts);
  try {
    for (let attempt = 1; ; attempt++) {
      await broker.prepare();
      try {
        await broker.launch();
        return broker;
      } catch (err) {
        if (attempt >= 3 || !(err instanceof ServerStartError) || !/port was taken/.test(err.message)) throw err;
      }
    }
  } catch (err) {
    await dir.cleanup();
    throw err;
  }
}
