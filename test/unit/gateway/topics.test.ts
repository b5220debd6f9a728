import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { TopicPolicy } from '../../../gateway/topics.js';

describe('TopicPolicy', () => {
  it('allows every topic when a pattern is a lone star', () => {
    const p = new TopicPolicy(['*']);
    assert.equal(p.allows('app-logs'), true);
    assert.equal(p.allows('x'), true);
  });

  it('matches a star against any run of characters, including none', () => {
    const p = new TopicPolicy(['app-*']);
    assert.equal(p.allows('app-'), true);
    assert.equal(p.allows('app-logs'), true);
    assert.equal(p.allows('app-logs.eu'), true);
    assert.equal(p.allows('web-app-logs'), false);
    assert.equal(p.allows('app'), false);
  });

  it('requires the whole name to match, not a substring', () => {
    const p = new TopicPolicy(['logs']);
    assert.equal(p.allows('logs'), true);
    assert.equal(p.allows('logs2'), false);
    assert.equal(p.allows('mylogs'), false);
  });

  it('treats dots and other regex characters literally', () => {
    const p = new TopicPolicy(['a.b', 'x*y.z']);
    assert.equal(p.allows('a.b'), true);
    assert.equal(p.allows('aXb'), false);
    assert.equal(p.allows('x--y.z'), true);
    assert.equal(p.allows('x--yQz'), false);
  });

  it('allows a topic when any of several patterns matches', () => {
    const p = new TopicPolicy(['audit', '*-metrics', 'app-*']);
    assert.equal(p.allows('audit'), true);
    assert.equal(p.allows('db-metrics'), true);
    assert.equal(p.allows('app-1'), true);
    assert.equal(p.allows('other'), false);
  });

  it('allows nothing when the list is empty', () => {
    const p = new TopicPolicy([]);
    assert.equal(p.allows('anything'), false);
    assert.equal(p.describe(), '(none)');
  });

  it('gives the same answer from its cache as on first lookup', () => {
    const p = new TopicPolicy(['a*']);
    for (let i = 0; i < 3; i++) {
      assert.equal(p.allows('abc'), true);
      assert.equal(p.allows('bcd'), false);
    }
  });

  it('rejects an empty pattern at construction', () => {
    assert.throws(() => new TopicPolicy(['ok', '']), /topic pattern 1/);
  });
});
