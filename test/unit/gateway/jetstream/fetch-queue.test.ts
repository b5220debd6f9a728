// FetchQueue: what the JetStream pump may fetch next, bounded by count and by bytes.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FetchQueue } from '../../../../gateway/inputs/jetstream/fetch-queue.js';

const msg = (bytes: number): { data: Uint8Array } => ({ data: new Uint8Array(bytes) });

describe('FetchQueue', () => {
  it('plans the first fetch with the largest message the server allows, then with the largest of the last fetches', () => {
    const q = new FetchQueue({ maxMessages: 256, maxBytes: 8 << 20, largestMessage: 1 << 20 });
    assert.equal(q.nextFetch(), 8, '8 MiB of room at 1 MiB per message');
    q.largestAllowed(4 << 20);
    assert.equal(q.nextFetch(), 2);
    for (let i = 0; i < 2; i++) q.push(msg(256 << 10));
    q.fetchEnded();
    assert.equal(q.bytes, 512 << 10);
    assert.equal(q.nextFetch(), 30, '7.5 MiB of room at 256 KiB per message');
    assert.equal(q.full(), false);
  });

  it('never asks for more than the count left, and at least one message while not full', () => {
    const q = new FetchQueue({ maxMessages: 4, maxBytes: 1 << 20, largestMessage: 100 });
    assert.equal(q.nextFetch(), 4);
    for (let i = 0; i < 3; i++) q.push(msg(100));
    assert.equal(q.nextFetch(), 1);
    q.push(msg(100));
    assert.equal(q.full(), true, 'full by count');

    const big = new FetchQueue({ maxMessages: 100, maxBytes: 1000, largestMessage: 5000 });
    assert.equal(big.nextFetch(), 1, 'a message larger than the whole budget still goes, alone');
    big.push(msg(5000));
    assert.equal(big.full(), true, 'full by bytes');
  });

  it('forgets large messages after a few fetches of small ones, and ignores fetches that brought nothing', () => {
    const q = new FetchQueue({ maxMessages: 1000, maxBytes: 100_000, largestMessage: 1 << 20 });
    q.push(msg(10_000));
    q.fetchEnded();
    q.take();
    assert.equal(q.nextFetch(), 10);
    for (let f = 0; f < 8; f++) {
      q.fetchEnded(); // empty fetches (expired) change nothing
      q.push(msg(1000));
      q.fetchEnded();
      q.take();
    }
    assert.equal(q.nextFetch(), 100, 'planned on the 1000-byte messages of the last 8 fetches');
  });

  it('takes the oldest messages within the byte budget (at least one), and puts messages back in front', () => {
    const q = new FetchQueue({ maxMessages: 10, maxBytes: 250, largestMessage: 100 });
    const ms = [msg(100), msg(100), msg(100), msg(400)];
    for (const m of ms) q.push(m);
    assert.deepEqual(q.take(), ms.slice(0, 2), 'two fit in 250 bytes');
    assert.equal(q.bytes, 500);
    assert.deepEqual(q.take(), [ms[2]], 'the next one alone: the 400-byte one does not fit beside it');
    assert.deepEqual(q.take(), [ms[3]], 'larger than the budget: alone');
    assert.equal(q.bytes, 0);
    q.push(ms[3]!);
    q.putBack([ms[0]!, ms[1]!]);
    assert.equal(q.bytes, 600);
    assert.deepEqual(q.take(), [ms[0], ms[1]], 'put back in front, in their order');
  });
});
