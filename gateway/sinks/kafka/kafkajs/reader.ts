/**
 * kafkajs reader of the committed topic (driver.ts `DriverReader`): a consumer in a consumer
 * group of its own, from the beginning, read_committed. kafkajs would restart a crashed consumer
 * on a timer that outlives disconnect(); restarts are done here instead, with a new group id each
 * time, so a rejoin never waits for the session timeout of a member that died with the broker.
 */
import { randomBytes } from 'node:crypto';
import type { Admin, Consumer, Kafka } from 'kafkajs';
import type { Logger } from '../../../../shared/log.js';
import { errorMessage } from '../../../../shared/errors.js';
import type { DriverReader, ReaderOptions } from '../driver.js';

export class KafkajsReader implements DriverReader {
  private consumer: Consumer | undefined;
  private readonly groupIds: string[] = [];
  readonly positions = new Map<number, number>();
  lastError: Error | undefined;
  private stopped = false;
  private restarting = false;
  private needsRestart = false;
  private wakeRetry: (() => void) | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly admin: Admin,
    private readonly clientId: string,
    private readonly log: Logger,
    private readonly opts: ReaderOptions,
  ) {}

  start(): Promise<void> {
    return this.startConsumer();
  }

  private async startConsumer(): Promise<void> {
    const { topic } = this.opts;
    const groupId = `${this.clientId}-committed-${this.opts.gatewayId}-${randomBytes(4).toString('hex')}`;
    this.groupIds.push(groupId);
    if (this.groupIds.length > 50) this.groupIds.shift();
    const consumer = this.kafka.consumer({
      groupId,
      readUncommitted: false,
      allowAutoTopicCreation: false,
      maxWaitTimeInMs: 200,
      retry: { initialRetryTime: 100, maxRetryTime: 2000, retries: 10, restartOnFailure: () => Promise.resolve(false) },
    });
    this.consumer = consumer;
    consumer.on(consumer.events.END_BATCH_PROCESS, ({ payload }) => {
      const next = Number(payload.lastOffset) + 1;
      if (next > (this.positions.get(payload.partition) ?? -1)) this.positions.set(payload.partition, next);
      this.opts.onProgress();
    });
    consumer.on(consumer.events.CRASH, ({ payload }) => {
      if (this.stopped || consumer !== this.consumer) return;
      this.lastError = payload.error;
      this.log.warn({ err: errorMessage(payload.error) }, 'committed-chunk reader crashed; restarting it');
      void this.restart();
    });
    try {
      await consumer.connect();
      await consumer.subscribe({ topics: [topic], fromBeginning: true });
    } catch (err) {
      await consumer.disconnect().catch(() => undefined);
      throw err;
    }
    if (this.stopped) {
      await consumer.disconnect().catch(() => undefined);
      return;
    }
    await consumer.run({
      autoCommit: false,
      eachBatch: ({ batch }) => {
        this.opts.onKeys(batch.messages.map((m) => m.key));
        return Promise.resolve();
      },
    });
  }

  private async restart(): Promise<void> {
    // A crash while restarting (e.g. the group coordinator still loading) sets needsRestart
    // again, so the loop goes round once more instead of leaving a dead reader behind.
    this.needsRestart = true;
    if (this.stopped || this.restarting) return;
    this.restarting = true;
    try {
      while (!this.stopped && this.needsRestart) {
        this.needsRestart = false;
        await this.consumer?.disconnect().catch(() => undefined);
        try {
          await this.startConsumer();
          if (!this.needsRestart) this.log.info('committed-chunk reader restarted');
        } catch (err) {
          this.needsRestart = true;
          this.log.warn({ err: errorMessage(err) }, 'committed-chunk reader could not restart; trying again');
          await new Promise<void>((resolve) => {
            const t = setTimeout(resolve, 2000);
            this.wakeRetry = () => {
              clearTimeout(t);
              resolve();
            };
          });
        }
      }
    } finally {
      this.restarting = false;
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.wakeRetry?.();
    await this.consumer?.disconnect().catch(() => undefined);
    await this.admin.deleteGroups(this.groupIds).catch(() => undefined);
  }
}
