// The librdkafka driver's producer over the batch addon, against a fake addon: what it hands to C
// (one call per chunk segment, spans into the chunk buffer, offsets, shared headers, flags), and
// how it turns the per-request delivery counts into the core's SendFailure.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { NativeProducer, type BatchAddon } from '../../../../gateway/sinks/kafka/librdkafka/native-producer.js';
import { RequestPacker, fileRecords, givenRecords } from '../../../../gateway/sinks/kafka/records.js';
import { RecordFlag } from '../../../../shared/chunk/codec.js';
import { KafkaError } from '../../../../shared/errors.js';
import { testChunk } from './fixtures.js';

const ALL = { headers: ['agent', 'host', 'path', 'offset', 'seq'] as const, key: 'none' as const };

interface Produced {
  batch: number;
  topic: string;
  partition: number;
  value: string;
  offset: number | undefined;
  headers: string[];
  flags: string | undefined;
}

/** A fake addon: records what it is given; `outcome(batch, i)` says how each record's delivery ends. */
class FakeAddon implements Partial<BatchAddon> {
  readonly produced: Produced[] = [];
  readonly calls: string[] = [];
  private readonly state = new Map<number, [number, number, number]>();
  /** error code of a record (0 = delivered); undefined = not reported yet */
  outcome: (batch: number, index: number) => number | undefined = () => 0;
  private pending: Array<{ batch: number; index: number }> = [];

  create = (): unknown => ({});
  produceChunk: BatchAddon['produceChunk'] = (_h, batch, topic, partition, _key, _ts, data, spans, offsets, lead, tail, flags) => {
    this.calls.push(`chunk ${batch} ${spans.length / 2}`);
    for (let i = 0; i < spans.length / 2; i++) {
      const value = data.subarray(spans[2 * i], spans[2 * i]! + spans[2 * i + 1]!).toString();
      const headers = [...lead.map(([n, v]) => `${n}=${v.toString()}`), ...tail.map(([n, v]) => `${n}=${v.toString()}`)];
      this.produced.push({ batch, topic, partition, value, offset: offsets?.[i], headers, flags: flags?.[i]?.toString() });
      this.pending.push({ batch, index: this.produced.filter((p) => p.batch === batch).length - 1 });
    }
    return spans.length / 2;
  };
  produceRecord = (_h: unknown, batch: number, topic: string, partition: number, _key: Buffer | null, value: Buffer): number => {
    this.calls.push(`record ${batch}`);
    this.produced.push({ batch, topic, partition, value: value.toString(), offset: undefined, headers: [], flags: undefined });
    this.pending.push({ batch, index: this.produced.filter((p) => p.batch === batch).length - 1 });
    return 0;
  };
  poll = (): void => {
    this.pending = this.pending.filter(({ batch, index }) => {
      const code = this.outcome(batch, index);
      if (code === undefined) return true;
      const s = this.state.get(batch) ?? [0, 0, 0];
      if (code === 0) s[0]++;
      else {
        if (s[1] === 0 || s[2] === -152) s[2] = code;
        s[1]++;
      }
      this.state.set(batch, s);
      return false;
    });
  };
  batchState = (_h: unknown, batch: number): [number, number, number] => this.state.get(batch) ?? [0, 0, 0];
  logs = (): Array<[number, string, string]> => [];
  errorName = (code: number): string => ({ 10: 'MSG_SIZE_TOO_LARGE', [-152]: '_PURGE_QUEUE' })[code] ?? `CODE_${code}`;
  fatalError = (): null => null;
  destroy = (): Promise<void> => Promise.resolve();
}

async function open(addon: FakeAddon, partitionOf: () => number = () => 2): Promise<NativeProducer> {
  return NativeProducer.open({
    addon: addon as unknown as BatchAddon,
    properties: {},
    transactional: false,
    partitionOf,
    toError: (code, name, message) => Object.assign(new KafkaError(message, code < 0), { type: name }),
    log: () => undefined,
    timeoutMs: 1000,
  });
}

describe('NativeProducer (librdkafka driver) over the batch addon', () => {
  it('hands a chunk to C in one call per request, with spans into its buffer, offsets, shared headers and flags', async () => {
    const addon = new FakeAddon();
    const p = await open(addon);
    const packer = new RequestPacker({ maxBatchBytes: 900 * 1024, maxBatchRecords: 10_000 });
    packer.addAll(fileRecords(testChunk({ seq: 9, topic: 't', lines: ['one', 'two', 'three'], flags: [0, RecordFlag.Continues, 0], offsetStart: 100 }), ALL));
    assert.equal(await p.send(packer.requests, () => undefined), undefined);
    assert.deepEqual(addon.calls, ['chunk 1 3']);
    assert.deepEqual(addon.produced.map((r) => [r.value, r.offset, r.partition, r.flags]), [
      ['one', 100, 2, undefined],
      ['two', 104, 2, 'split'],
      ['three', 108, 2, undefined],
    ]);
    assert.deepEqual(addon.produced[0]!.headers, ['ferry.agent=agent-1', 'ferry.host=host-1', 'ferry.path=/var/log/app.log', 'ferry.seq=9']);
    await p.close();
  });

  it('keeps a chunk that spans several requests in the one partition picked for it', async () => {
    const addon = new FakeAddon();
    let picks = 0;
    const p = await open(addon, () => picks++);
    const packer = new RequestPacker({ maxBatchBytes: 1024, maxBatchRecords: 2 });
    packer.addAll(fileRecords(testChunk({ seq: 1, topic: 't', lines: ['a', 'b', 'c', 'd', 'e'] }), ALL));
    assert.equal(packer.requests.length, 3);
    assert.equal(await p.send(packer.requests, () => undefined), undefined);
    assert.deepEqual(new Set(addon.produced.map((r) => r.partition)), new Set([0]));
    assert.equal(picks, 1);
    await p.close();
  });

  it('names the request whose record Kafka refused, not an earlier one whose records were only purged', async () => {
    const addon = new FakeAddon();
    // request 1 (batch 1) was purged; request 2 (batch 2) holds the record Kafka refused
    addon.outcome = (batch) => (batch === 1 ? -152 : batch === 2 ? 10 : 0);
    const p = await open(addon);
    const packer = new RequestPacker({ maxBatchBytes: 1024, maxBatchRecords: 10 });
    packer.addAll(fileRecords(testChunk({ seq: 1, topic: 't', lines: ['small'] }), ALL));
    packer.addAll(givenRecords('t', [{ key: null, value: Buffer.alloc(5000, 0x78) }], 1));
    assert.equal(packer.requests.length, 2);
    const failed = await p.send(packer.requests, () => undefined);
    assert.equal(failed?.failedAt, 0);
    assert.equal(failed?.causeAt, 1);
    assert.equal((failed?.error as { type?: string }).type, 'MSG_SIZE_TOO_LARGE');
    await p.close();
  });

  it('stops before the request whose check() throws, after settling the earlier ones, and passes that error on', async () => {
    const addon = new FakeAddon();
    const p = await open(addon);
    const packer = new RequestPacker({ maxBatchBytes: 1024, maxBatchRecords: 1 });
    packer.addAll(fileRecords(testChunk({ seq: 1, topic: 't', lines: ['a', 'b', 'c'] }), ALL));
    const stop = new Error('aborted');
    let checks = 0;
    const failed = await p.send(packer.requests, () => {
      if (++checks === 2) throw stop;
    });
    assert.deepEqual(failed, { failedAt: 1, error: stop });
    assert.deepEqual(addon.calls, ['chunk 1 1']);
    await p.close();
  });
});
