import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PatternSet, TopicPolicy, reservedTopicsOf } from '../../../gateway/topics.js';

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

describe('TopicPolicy reserved topics', () => {
  it('refuses the committed-chunk topic, "__" topics and "_" topics even when a pattern is a lone star', () => {
    const p = new TopicPolicy(['*']);
    assert.equal(p.allows('ferry.committed-chunks'), false);
    assert.equal(p.allows('__consumer_offsets'), false);
    assert.equal(p.allows('_schemas'), false);
    assert.equal(p.allows('app_logs'), true);
    assert.match(p.reservedReason('ferry.committed-chunks')!, /kafka\.committedTopic/);
    assert.match(p.reservedReason('__transaction_state')!, /internal Kafka topic/);
    assert.match(p.reservedReason('_schemas')!, /allowUnderscoreTopics/);
    assert.equal(p.reservedReason('app-logs'), null);
  });

  it('tells a reserved topic from one the patterns do not allow', () => {
    const p = new TopicPolicy(['app-*']);
    assert.equal(p.allows('billing'), false);
    assert.equal(p.reservedReason('billing'), null);
  });

  it('takes the committed topic and the "_" rule from the gateway config; "__" stays refused', () => {
    const reserved = reservedTopicsOf({ kafka: { committedTopic: 'markers' }, allowUnderscoreTopics: true });
    const p = new TopicPolicy(['*'], reserved);
    assert.equal(p.allows('markers'), false);
    assert.equal(p.allows('ferry.committed-chunks'), true);
    assert.equal(p.allows('_schemas'), true);
    assert.equal(p.allows('__consumer_offsets'), false);
  });
});

describe('PatternSet', () => {
  it('matches agent ids against star patterns, and nothing when empty', () => {
    const web = new PatternSet(['web-*', 'db-01']);
    assert.equal(web.matches('web-07'), true);
    assert.equal(web.matches('db-01'), true);
    assert.equal(web.matches('db-02'), false);
    assert.equal(new PatternSet([]).matches('web-01'), false);
  });
});
