import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { backoffDelay, parseRetryAfter } from '../../../shared/backoff.js';

const policy = { initialMs: 500, maxMs: 30_000, multiplier: 2, jitter: 0 };

describe('backoffDelay', () => {
  it('starts at initialMs and multiplies by multiplier per attempt', () => {
    assert.deepEqual(
      [1, 2, 3, 4, 5].map((a) => backoffDelay(policy, a)),
      [500, 1000, 2000, 4000, 8000],
    );
  });

  it('never exceeds maxMs, even for huge attempt numbers', () => {
    assert.equal(backoffDelay(policy, 7), 30_000);
    assert.equal(backoffDelay(policy, 1e9), 30_000);
    assert.equal(backoffDelay({ ...policy, multiplier: 1e6 }, 400), 30_000);
  });

  it('takes a random part of at most jitter off each delay', () => {
    const p = { ...policy, jitter: 0.2 };
    assert.equal(backoffDelay(p, 2, () => 0), 1000);
    assert.equal(backoffDelay(p, 2, () => 0.5), 900);
    assert.equal(backoffDelay(p, 2, () => 0.999999), 800);
  });

  it('stays within [base * (1 - jitter), min(maxMs, base)] for any policy and attempt', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 100_000 }),
        fc.integer({ min: 1, max: 1_000_000 }),
        fc.double({ min: 1, max: 100, noNaN: true }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.integer({ min: 1, max: 10_000 }),
        fc.double({ min: 0, max: 0.999999, noNaN: true }),
        (initialMs, maxMs, multiplier, jitter, attempt, r) => {
          const d = backoffDelay({ initialMs, maxMs, multiplier, jitter }, attempt, () => r);
          const ceiling = Math.max(initialMs, maxMs);
          return Number.isFinite(d) && d >= 0 && d <= ceiling;
        },
      ),
    );
  });

  it('is non-decreasing in the attempt number when jitter is zero', () => {
    let prev = 0;
    for (let a = 1; a < 50; a++) {
      const d = backoffDelay({ initialMs: 3, maxMs: 10_000, multiplier: 1.7, jitter: 0 }, a);
      assert.ok(d >= prev);
      prev = d;
    }
  });
});

describe('parseRetryAfter', () => {
  it('reads delta-seconds', () => {
    assert.equal(parseRetryAfter('3'), 3000);
    assert.equal(parseRetryAfter(' 0 '), 0);
  });

  it('reads an HTTP date relative to now and never goes negative', () => {
    const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT');
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:28:05 GMT', now), 5000);
    assert.equal(parseRetryAfter('Wed, 21 Oct 2015 07:27:00 GMT', now), 0);
  });

  it('returns undefined for a missing or unintelligible header', () => {
    assert.equal(parseRetryAfter(undefined), undefined);
    assert.equal(parseRetryAfter(''), undefined);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter('-5'), undefined);
  });
});
