// Dead-letter replay and list with a fake dead-letter stream and a fake sink: what is removed,
// what is kept and why, and what is reported. (Against real NATS and Kafka:
// test/integration/gateway-deadletters.test.ts.)
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { Sink, SinkChunk, SinkOutcome } from '../../../../gateway/sinks/sink.js';
import { TopicPolicy } from '../../../../gateway/topics.js';
import { describeDeadLetter, type DeadLetterMessage } from '../../../../gateway/deadletters/deadletter.js';
import { replayDeadLetters, type ReplayResult } from '../../../../gateway/deadletters/replay.js';
import { listDeadLetters } from '../../../../gateway/deadletters/list.js';
import type { DeadLetterSource, DeadLetterSummary } from '../../../../gateway/deadletters/stream.js';
import { encodeTestChunk } from '../sinks/fixtures.js';
import { deadLetterHeaders, type DeadLetterSpec } from './fixtures.js';

class FakeStream implements DeadLetterSource {
  readonly messages = new Map<number, DeadLetterMessage>();
  replayed = 0;
  failRemove = false;

  add(seq: number, data: Uint8Array, spec: DeadLetterSpec): void {
    this.messages.set(seq, { seq, subject: 'ferry.dead', headers: deadLetterHeaders(spec), data, time: new Date(1_700_000_000_000 + seq) });
  }
  summary(): Promise<DeadLetterSummary> {
    const bytes = [...this.messages.values()].reduce((n, m) => n + m.data.length, 0);
    const seqs = [...this.messages.keys()];
    return Promise.resolve({ stream: 'FERRY_DEAD', messages: seqs.length, bytes, firstSeq: Math.min(...seqs), lastSeq: Math.max(...seqs), replayed: this.replayed, discarded: 0, maxBytes: 1024, maxAgeMs: 3600_000 });
  }
  async *all(): AsyncIterable<DeadLetterMessage> {
    for (const seq of [...this.messages.keys()].sort((a, b) => a - b)) {
      const m = this.messages.get(seq);
      if (m) yield await Promise.resolve(m);
    }
  }
  get(seq: number): Promise<DeadLetterMessage | null> {
    return Promise.resolve(this.messages.get(seq) ?? null);
  }
  remove(seq: number): Promise<void> {
    if (this.failRemove) return Promise.reject(new Error('JetStream timeout'));
    this.messages.delete(seq);
    return Promise.resolve();
  }
  countReplayed(n: number): Promise<void> {
    this.replayed += n;
    return Promise.resolve();
  }
}

/** A sink answering per chunk id with the given outcomes (default ok), recording what it got. */
class FakeSink implements Sink {
  readonly sent: string[] = [];
  constructor(private readonly answer: (id: string, attempt: number) => SinkOutcome = () => ({ kind: 'ok', duplicate: false })) {}
  private readonly attempts = new Map<string, number>();
  start(): Promise<void> {
    return Promise.resolve();
  }
  send(chunks: readonly SinkChunk[]): Promise<SinkOutcome[]> {
    return Promise.resolve(
      chunks.map((c) => {
        const id = `${c.chunk.header.agentId}/${c.chunk.header.seq}`;
        const attempt = (this.attempts.get(id) ?? 0) + 1;
        this.attempts.set(id, attempt);
        this.sent.push(id);
        return this.answer(id, attempt);
      }),
    );
  }
  stop(): Promise<void> {
    return Promise.resolve();
  }
  health(): { ready: boolean; detail: string } {
    return { ready: true, detail: 'fake' };
  }
}

function chunk(seq: number, topic = 'logs'): Buffer {
  return encodeTestChunk({ agentId: 'agent-1', seq, topic, lines: [`line ${seq}`] });
}

async function replay(stream: FakeStream, sink: Sink, seqs: readonly number[] | 'all', opts: { allow?: string[]; retryForMs?: number } = {}): Promise<ReplayResult[]> {
  const results: ReplayResult[] = [];
  await replayDeadLetters(seqs, {
    source: stream,
    sink,
    policy: new TopicPolicy(opts.allow ?? ['*']),
    sourceName: 'nats',
    retryForMs: opts.retryForMs ?? 1000,
    onResult: (r) => results.push(r),
    sleep: () => Promise.resolve(),
  });
  return results;
}

describe('dead-letter replay', () => {
  it('sends every dead letter through the sink and removes each only after the sink answered ok', async () => {
    const stream = new FakeStream();
    stream.add(3, chunk(1), { reason: 'refused', error: 'too large', msgId: 'agent-1/1' });
    stream.add(7, chunk(2), { reason: 'refused', error: 'too large', msgId: 'agent-1/2' });
    const presentAtSend: boolean[] = [];
    const sink = new FakeSink(() => {
      presentAtSend.push(stream.messages.size === 2);
      return { kind: 'ok', duplicate: false };
    });
    const results = await replay(stream, sink, 'all');
    assert.deepEqual(sink.sent, ['agent-1/1', 'agent-1/2']);
    assert.deepEqual(presentAtSend, [true, true], 'nothing removed before the sink answered');
    assert.deepEqual(results.map((r) => [r.seq, r.outcome, r.msgId, r.topic]), [
      [3, 'replayed', 'agent-1/1', 'logs'],
      [7, 'replayed', 'agent-1/2', 'logs'],
    ]);
    assert.equal(stream.messages.size, 0);
    assert.equal(stream.replayed, 2, 'counted as replayed');
  });

  it('removes a chunk the committed set already holds and reports it as a duplicate', async () => {
    const stream = new FakeStream();
    stream.add(1, chunk(1), { reason: 'refused', error: 'x', msgId: 'agent-1/1' });
    const results = await replay(stream, new FakeSink(() => ({ kind: 'ok', duplicate: true })), [1]);
    assert.deepEqual(results.map((r) => r.outcome), ['duplicate']);
    assert.equal(stream.messages.size, 0);
  });

  it('keeps a dead letter Kafka refuses, with its error', async () => {
    const stream = new FakeStream();
    stream.add(1, chunk(1), { reason: 'refused', error: 'x', msgId: 'agent-1/1' });
    stream.add(2, chunk(2), { reason: 'refused', error: 'x', msgId: 'agent-1/2' });
    const sink = new FakeSink((id) => (id === 'agent-1/1' ? { kind: 'fatal', fault: 'chunk', error: new Error('record too large') } : { kind: 'ok', duplicate: false }));
    const results = await replay(stream, sink, 'all');
    assert.equal(results[0]!.outcome, 'kept');
    assert.match(results[0]!.detail!, /record too large/);
    assert.equal(results[1]!.outcome, 'replayed');
    assert.deepEqual([...stream.messages.keys()], [1]);
    assert.equal(stream.replayed, 1);
  });

  it('tries a chunk the sink answers retry for again, and keeps it once retryForMs has passed', async () => {
    const stream = new FakeStream();
    stream.add(1, chunk(1), { reason: 'refused', error: 'x', msgId: 'agent-1/1' });
    stream.add(2, chunk(2), { reason: 'refused', error: 'x', msgId: 'agent-1/2' });
    // agent-1/1 succeeds on its third attempt; agent-1/2 never does
    const sink = new FakeSink((id, attempt) => (id === 'agent-1/1' && attempt >= 3 ? { kind: 'ok', duplicate: false } : { kind: 'retry', error: new Error('broker down') }));
    let now = 0;
    const realNow = Date.now;
    Date.now = () => realNow() + now;
    try {
      const results: ReplayResult[] = [];
      await replayDeadLetters('all', {
        source: stream,
        sink,
        policy: new TopicPolicy(['*']),
        sourceName: 'nats',
        retryForMs: 10_000,
        onResult: (r) => results.push(r),
        sleep: (ms) => {
          now += ms;
          return Promise.resolve();
        },
      });
      assert.deepEqual(results.map((r) => [r.seq, r.outcome]), [
        [1, 'replayed'],
        [2, 'kept'],
      ]);
      assert.match(results[1]!.detail!, /broker down/);
      assert.ok(sink.sent.filter((id) => id === 'agent-1/2').length > 3, 'tried again until the deadline');
    } finally {
      Date.now = realNow;
    }
    assert.deepEqual([...stream.messages.keys()], [2]);
  });

  it('says that a payload which does not decode cannot be replayed, and keeps it without calling the sink', async () => {
    const stream = new FakeStream();
    stream.add(4, Buffer.from('not a chunk'), { reason: 'malformed', error: 'bad magic', msgId: 'agent-9/12' });
    const sink = new FakeSink();
    const results = await replay(stream, sink, [4]);
    assert.equal(results[0]!.outcome, 'kept');
    assert.match(results[0]!.detail!, /cannot be replayed/);
    assert.match(results[0]!.detail!, /FERRY_CHUNK_MALFORMED/);
    assert.deepEqual(sink.sent, []);
    assert.equal(stream.messages.size, 1);
  });

  it('keeps a chunk whose topic nats.allowTopics still refuses', async () => {
    const stream = new FakeStream();
    stream.add(1, chunk(1, 'secret'), { reason: 'forbidden-topic', error: 'not allowed', msgId: 'agent-1/1' });
    const sink = new FakeSink();
    const results = await replay(stream, sink, 'all', { allow: ['logs'] });
    assert.equal(results[0]!.outcome, 'kept');
    assert.match(results[0]!.detail!, /nats\.allowTopics/);
    assert.deepEqual(sink.sent, []);
  });

  it('never replays a chunk dead-lettered for claiming another agent\'s identity, and lists it as not replayable', async () => {
    const stream = new FakeStream();
    stream.add(1, chunk(1), { reason: 'identity', error: 'the chunk claims agent "agent-1" but was published on "ferry.chunks.evil"', msgId: 'agent-1/1/AAAAAAAAAAAAAAAAAAAAAA' });
    const sink = new FakeSink();
    const results = await replay(stream, sink, 'all');
    assert.equal(results[0]!.outcome, 'kept');
    assert.match(results[0]!.detail!, /cannot be replayed: it claims another agent's identity/);
    assert.equal(results[0]!.msgId, 'agent-1/1/AAAAAAAAAAAAAAAAAAAAAA');
    assert.deepEqual(sink.sent, []);
    assert.equal(stream.messages.size, 1);
  });

  it('reports a sequence that is not in the stream as missing', async () => {
    const stream = new FakeStream();
    stream.add(1, chunk(1), { reason: 'refused', error: 'x', msgId: 'agent-1/1' });
    const results = await replay(stream, new FakeSink(), [9, 1]);
    assert.deepEqual(results.map((r) => [r.seq, r.outcome]), [
      [9, 'missing'],
      [1, 'replayed'],
    ]);
  });

  it('reports a chunk in Kafka whose removal failed, so the operator knows it is still listed', async () => {
    const stream = new FakeStream();
    stream.add(1, chunk(1), { reason: 'refused', error: 'x', msgId: 'agent-1/1' });
    stream.failRemove = true;
    const results = await replay(stream, new FakeSink(), 'all');
    assert.equal(results[0]!.outcome, 'replayed');
    assert.match(results[0]!.detail!, /could not be removed.*JetStream timeout/);
    assert.equal(stream.replayed, 0);
  });
});

describe('dead-letter list', () => {
  it('describes a dead letter from the headers the JetStream input writes, and the chunk it holds', () => {
    const { deadLetter, chunk: decoded } = describeDeadLetter({
      seq: 5,
      subject: 'ferry.dead',
      headers: deadLetterHeaders({ reason: 'refused', error: 'record too large', msgId: 'agent-1/42', subject: 'ferry.chunks.agent-1', stream: 'FERRY_CHUNKS', streamSeq: 77 }),
      data: chunk(42),
      time: new Date('2026-01-02T03:04:05.000Z'),
    });
    assert.ok(decoded);
    assert.deepEqual(deadLetter, {
      seq: 5,
      time: '2026-01-02T03:04:05.000Z',
      bytes: chunk(42).length,
      reason: 'refused',
      error: 'record too large',
      msgId: 'agent-1/42',
      agentId: 'agent-1',
      chunkSeq: 42,
      subject: 'ferry.chunks.agent-1',
      topic: 'logs',
      path: '/var/log/app.log',
      lines: 1,
      originalStream: 'FERRY_CHUNKS',
      originalSeq: 77,
      replayable: true,
      decodeError: null,
    });
  });

  it('writes the summary and every dead letter as one JSON document', async () => {
    const stream = new FakeStream();
    stream.add(2, chunk(1), { reason: 'refused', error: 'x', msgId: 'agent-1/1' });
    stream.add(5, Buffer.from('junk'), { reason: 'malformed', error: 'bad', msgId: 'agent-2/8' });
    let text = '';
    await listDeadLetters(stream, 'FERRY_DEAD', { write: (s: string) => (text += s) }, true);
    const doc = JSON.parse(text) as { stream: string; messages: number; deadLetters: Array<{ seq: number; replayable: boolean; agentId: string; chunkSeq: number }> };
    assert.equal(doc.stream, 'FERRY_DEAD');
    assert.equal(doc.messages, 2);
    assert.deepEqual(doc.deadLetters.map((d) => [d.seq, d.replayable, d.agentId, d.chunkSeq]), [
      [2, true, 'agent-1', 1],
      [5, false, 'agent-2', 8],
    ]);
  });

  it('says when the dead-letter stream does not exist', async () => {
    const none: DeadLetterSource = { summary: () => Promise.resolve(null), all: async function* () {}, get: () => Promise.resolve(null), remove: () => Promise.resolve(), countReplayed: () => Promise.resolve() };
    let text = '';
    await listDeadLetters(none, 'FERRY_DEAD', { write: (s: string) => (text += s) }, false);
    assert.match(text, /FERRY_DEAD does not exist/);
  });
});
