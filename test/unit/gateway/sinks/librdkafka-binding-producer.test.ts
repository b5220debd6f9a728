// The librdkafka producer's send() against a fake native producer: which request a failure is
// reported at (from delivery reports of failed records only), flushes around a lone oversized
// record, check(), flush timeouts, and one partition per unkeyed chunk.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { gatewayConfigSchema, HEADER_NAMES } from '../../../../gateway/config.js';
import { BindingFallbackProducer, type PartitionPicker } from '../../../../gateway/sinks/kafka/librdkafka/binding-producer.js';
import { codeNames } from '../../../../gateway/sinks/kafka/librdkafka/errors.js';
import type { DeliveryReport, NativeError, BindingProducer } from '../../../../gateway/sinks/kafka/librdkafka/native.js';
import { RequestPacker, fileRecords, type ChunkRecords, type ProduceRequest } from '../../../../gateway/sinks/kafka/records.js';
import { errorTypes } from '../../../../gateway/sinks/kafka/classify.js';
import { silentLogger } from '../../../../shared/log.js';
import { makeLines, testChunk } from './fixtures.js';

const names = codeNames({ ERR__MSG_TIMED_OUT: -192, ERR__TIMED_OUT: -185, ERR_MSG_SIZE_TOO_LARGE: 10 });

interface Produced {
  topic: string;
  partition: number | null;
  value: Buffer;
  /** how many flushes had happened when it was produced */
  flushesBefore: number;
}

/** A native producer that takes every record and, at flush, reports the ones `fails` picks as failed, a turn after the flush callback (like the binding). */
class FakeNative {
  readonly produced: Produced[] = [];
  flushes = 0;
  private pending: Produced[] = [];
  private listener: ((err: NativeError | null, r: DeliveryReport) => void) | undefined;
  constructor(
    private readonly fails: (p: Produced) => number | undefined = () => undefined,
    private readonly flushError?: NativeError,
  ) {}
  on(event: string, fn: (err: NativeError | null, r: DeliveryReport) => void): void {
    if (event === 'delivery-report') this.listener = fn;
  }
  produce(topic: string, partition: number | null, value: Buffer): void {
    const p = { topic, partition, value, flushesBefore: this.flushes };
    this.produced.push(p);
    this.pending.push(p);
  }
  flush(_timeoutMs: number, cb: (err: NativeError | null) => void): void {
    this.flushes++;
    const settled = this.pending.splice(0);
    setImmediate(() => {
      cb(this.flushError ?? null);
      setImmediate(() => {
        for (const p of settled) {
          const code = this.fails(p);
          if (code !== undefined) this.listener?.(Object.assign(new Error(`fake ${code}`), { code }), { topic: p.topic, partition: p.partition ?? 0, offset: -1, size: p.value.length, value: Buffer.from(p.value) });
        }
      });
    });
  }
  disconnect(_t: number, cb: () => void): void {
    cb();
  }
}

function producerOver(native: FakeNative, maxBatchBytes = 4096): BindingFallbackProducer {
  const config = gatewayConfigSchema.parse({ id: 'g', kafka: { brokers: ['k:9092'], driver: 'librdkafka', maxBatchBytes }, http: { allowAnonymous: true } }).kafka;
  let next = 0;
  const picker: PartitionPicker = { pick: () => Promise.resolve(next++ % 3), refused: () => undefined };
  return new BindingFallbackProducer(native as unknown as BindingProducer, names, config, picker, silentLogger());
}

const set = (seq: number, lines: ReadonlyArray<Buffer | string>): ChunkRecords => fileRecords(testChunk({ seq, topic: 't', lines }), { headers: HEADER_NAMES, key: 'none' });

function pack(sets: readonly ChunkRecords[], maxBatchBytes = 4096): ProduceRequest[] {
  const packer = new RequestPacker({ maxBatchBytes, maxBatchRecords: 10_000 });
  for (const s of sets) packer.addAll(s);
  return packer.requests;
}

describe('librdkafka producer: failures from the delivery reports of failed records', () => {
  it('reports the first request holding a failed record, found by its value among records of one size', async () => {
    // three chunks of equal-sized lines over several requests; the second chunk's last 5 lines and the third chunk time out
    const sets = [1, 2, 3].map((seq) => set(seq, makeLines(20, 100, `c${seq}`)));
    const requests = pack(sets);
    const holding = requests.findIndex((r) => r.segments.some((g) => g.records === sets[1] && g.from <= 15 && 15 < g.to));
    assert.ok(holding > 0 && holding < requests.length - 1, `request ${holding} of ${requests.length} holds the first failed record`);
    const late = new Set(makeLines(20, 100, 'c2').slice(15).map((b) => b.toString('latin1')));
    const native = new FakeNative((p) => (late.has(p.value.toString('latin1')) || p.value.toString('latin1').startsWith('c3') ? -192 : undefined));
    const failed = await producerOver(native).send(requests, () => undefined);
    assert.equal(failed?.failedAt, holding);
    assert.deepEqual(errorTypes(failed?.error), ['ERR__MSG_TIMED_OUT']);
    assert.equal(native.flushes, 1, 'one flush for the whole send');
  });

  it('resolves undefined when no record failed, after one flush', async () => {
    const native = new FakeNative();
    assert.equal(await producerOver(native).send(pack([set(1, ['a', 'b']), set(2, ['c'])]), () => undefined), undefined);
    assert.equal(native.produced.length, 3);
  });

  it('flushes a lone record over maxBatchBytes alone, so no other record shares its batch, and reports it at its request', async () => {
    const big = Buffer.alloc(10_000, 'B');
    const requests = pack([set(1, makeLines(10, 100, 'before')), set(2, [big]), set(3, makeLines(10, 100, 'behind'))]);
    assert.equal(requests.length, 3);
    const native = new FakeNative((p) => (p.value.length === big.length ? 10 : undefined));
    const failed = await producerOver(native).send(requests, () => undefined);
    assert.equal(failed?.failedAt, 1);
    assert.deepEqual(errorTypes(failed?.error), ['MESSAGE_TOO_LARGE']);
    const bigAt = native.produced.find((p) => p.value.length === big.length)!;
    assert.equal(bigAt.flushesBefore, 1, 'flushed before it');
    assert.ok(native.produced.filter((p) => p.value.length !== big.length && p.flushesBefore === bigAt.flushesBefore).length === 0, 'nothing else between the flushes around it');
  });

  it('flushes what it handed over when check() throws, then reports that error at that request', async () => {
    const requests = pack([1, 2, 3].map((seq) => set(seq, makeLines(20, 100, `k${seq}`))));
    const native = new FakeNative();
    const stop = new Error('stop');
    let calls = 0;
    const failed = await producerOver(native).send(requests, () => {
      if (++calls === 3) throw stop;
    });
    assert.equal(failed?.failedAt, 2);
    assert.equal(failed?.error, stop);
    assert.equal(native.produced.length, requests[0]!.records + requests[1]!.records, 'requests 0 and 1 only');
    assert.equal(native.flushes, 1, 'flushed before answering');
  });

  it('reports a flush that timed out at request 0: no request is known acknowledged', async () => {
    const native = new FakeNative(undefined, Object.assign(new Error('timed out'), { code: -185 }));
    const failed = await producerOver(native).send(pack([set(1, ['a']), set(2, makeLines(60, 100, 'x'))]), () => undefined);
    assert.equal(failed?.failedAt, 0);
    assert.deepEqual(errorTypes(failed?.error), ['ERR__TIMED_OUT']);
  });

  it('gives every record of an unkeyed chunk the one partition picked for it, and the next chunk the next pick', async () => {
    const native = new FakeNative();
    const sets = [set(1, makeLines(60, 100, 'a')), set(2, makeLines(60, 100, 'b'))];
    const requests = pack(sets);
    assert.ok(requests.length > 2, 'the chunks span several requests');
    assert.equal(await producerOver(native).send(requests, () => undefined), undefined);
    const partitionsOf = (tag: string): Set<number | null> => new Set(native.produced.filter((p) => p.value.toString('latin1').startsWith(tag)).map((p) => p.partition));
    assert.deepEqual([...partitionsOf('a-')], [0]);
    assert.deepEqual([...partitionsOf('b-')], [1]);
  });
});
