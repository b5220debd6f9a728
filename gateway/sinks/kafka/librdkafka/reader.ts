/**
 * librdkafka reader of the committed topic (driver.ts `DriverReader`): a native KafkaConsumer,
 * read_committed, with every partition assign()ed from the beginning: no consumer group is
 * joined and no offset is ever committed (librdkafka insists on a group.id anyway: a random one,
 * never used on the broker). `position()` moves past transaction markers and aborted records,
 * so `position >= last stable offset` means caught up (the driver conformance suite checks it).
 *
 * A consume loop runs until stop(): `consume(1000)` (the binding waits up to 200 ms in a worker
 * thread), keys to `onKeys`, positions from `position()`, then `onProgress`. An error that
 * leaves the consumer unusable (fatal, or the consumer disconnected) restarts it after 2 s from
 * the positions reached; transient ones (broker down: librdkafka reconnects by itself) are only
 * remembered in `lastError`.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../../../shared/log.js';
import { errorMessage } from '../../../../shared/errors.js';
import type { DriverReader, KafkaSinkConfig, ReaderOptions } from '../driver.js';
import { readerConfig } from './config.js';
import { call, type NativeConsumer, type NativeError, type RdKafka } from './native.js';

/** librdkafka's OFFSET_BEGINNING */
const OFFSET_BEGINNING = -2;
const CONSUME_BATCH = 1000;
const RESTART_DELAY_MS = 2000;

export class LibrdkafkaReader implements DriverReader {
  readonly positions = new Map<number, number>();
  lastError: Error | undefined;
  private consumer: NativeConsumer | undefined;
  private stopped = false;
  private loop: Promise<void> | undefined;
  private wakeDelay: (() => void) | undefined;

  constructor(
    private readonly lib: RdKafka,
    private readonly config: KafkaSinkConfig,
    private readonly partitionCount: (topic: string) => Promise<number | undefined>,
    private readonly watch: (client: NativeConsumer) => void,
    private readonly log: Logger,
    private readonly opts: ReaderOptions,
  ) {}

  async start(): Promise<void> {
    await this.open();
    this.loop = this.run();
  }

  private async open(): Promise<void> {
    const { topic } = this.opts;
    const partitions = await this.partitionCount(topic);
    if (partitions === undefined) throw new Error(`the committed-chunk topic "${topic}" does not exist`);
    const groupId = `${this.config.clientId}-committed-${this.opts.gatewayId}-${randomBytes(4).toString('hex')}`;
    const consumer = new this.lib.KafkaConsumer(readerConfig(this.config, groupId), {});
    this.watch(consumer);
    consumer.on('event.error', (err: NativeError) => {
      this.lastError = err;
    });
    await call((cb) => consumer.connect({ timeout: Math.max(this.config.requestTimeoutMs, 10_000) }, cb));
    consumer.setDefaultConsumeTimeout(200);
    const assignments = [];
    for (let p = 0; p < partitions; p++) assignments.push({ topic, partition: p, offset: this.positions.get(p) ?? OFFSET_BEGINNING });
    consumer.assign(assignments);
    this.consumer = consumer;
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const consumer = this.consumer;
      try {
        if (consumer === undefined) throw new Error('the committed-chunk reader has no consumer');
        const messages = await call<Array<{ partition: number; key?: Buffer | null }>>((cb) => consumer.consume(CONSUME_BATCH, cb));
        if (this.stopped) return;
        if (messages.length > 0) this.opts.onKeys(messages.map((m) => m.key ?? null));
        for (const p of consumer.position()) if (p.offset !== undefined && p.offset >= 0) this.positions.set(p.partition, p.offset);
        this.opts.onProgress();
      } catch (err) {
        if (this.stopped) return;
        this.lastError = err instanceof Error ? err : new Error(String(err));
        const e = err as Partial<NativeError>;
        if (consumer !== undefined && consumer.isConnected() && e.isFatal !== true) {
          await new Promise((r) => setTimeout(r, 200));
          continue;
        }
        this.log.warn({ err: errorMessage(err) }, 'committed-chunk reader failed; restarting it');
        await this.restart();
      }
    }
  }

  private async restart(): Promise<void> {
    const old = this.consumer;
    this.consumer = undefined;
    if (old !== undefined) await call((cb) => old.disconnect(cb)).catch(() => undefined);
    while (!this.stopped && this.consumer === undefined) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, RESTART_DELAY_MS);
        this.wakeDelay = () => {
          clearTimeout(t);
          resolve();
        };
      });
      if (this.stopped) return;
      try {
        await this.open();
        this.log.info('committed-chunk reader restarted');
      } catch (err) {
        this.lastError = err instanceof Error ? err : new Error(String(err));
        this.log.warn({ err: errorMessage(err) }, 'committed-chunk reader could not restart; trying again');
      }
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeDelay?.();
    await this.loop?.catch(() => undefined);
    const c = this.consumer;
    this.consumer = undefined;
    if (c !== undefined) await Promise.race([call((cb) => c.disconnect(cb)).catch(() => undefined), new Promise((r) => setTimeout(r, 5000))]);
  }
}
