// Identity binding of what arrives over NATS: the subject names the agent; the payload must agree.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chunkIdentityProblem, heartbeatIdentityOk, subjectAgentId } from '../../../../gateway/inputs/jetstream/identity.js';
import { chunkDigest, chunkMsgId } from '../../../../shared/protocol.js';

const BYTES = Buffer.from('the encoded chunk');

describe('JetStream identity', () => {
  it('reads the agent id a subject names after the prefix, and none from other subjects', () => {
    assert.equal(subjectAgentId('ferry.chunks', 'ferry.chunks.web-01'), 'web-01');
    assert.equal(subjectAgentId('ferry.chunks', 'ferry.chunks.web.01'), 'web.01');
    assert.equal(subjectAgentId('ferry.chunks', 'ferry.chunks.'), undefined);
    assert.equal(subjectAgentId('ferry.chunks', 'ferry.chunksx.web'), undefined);
    assert.equal(subjectAgentId('ferry.chunks', 'other.web'), undefined);
  });

  it('accepts a chunk whose header agent is the subject agent and whose Nats-Msg-Id is agentId/seq/<digest of its bytes>, or agentId/seq', () => {
    assert.equal(chunkMsgId('victim', 7, BYTES), `victim/7/${chunkDigest(BYTES)}`);
    assert.equal(chunkIdentityProblem('ferry.chunks', 'ferry.chunks.victim', chunkMsgId('victim', 7, BYTES), { agentId: 'victim', seq: 7 }, BYTES), undefined);
    assert.equal(chunkIdentityProblem('ferry.chunks', 'ferry.chunks.victim', 'victim/7', { agentId: 'victim', seq: 7 }, BYTES), undefined);
  });

  it('refuses a Nats-Msg-Id whose digest is not that of the chunk\'s bytes', () => {
    const other = chunkMsgId('victim', 7, Buffer.from('other bytes'));
    assert.match(chunkIdentityProblem('ferry.chunks', 'ferry.chunks.victim', other, { agentId: 'victim', seq: 7 }, BYTES) ?? '', /does not carry the digest of the chunk's bytes/);
    assert.match(chunkIdentityProblem('ferry.chunks', 'ferry.chunks.victim', 'victim/7/', { agentId: 'victim', seq: 7 }, BYTES) ?? '', /does not carry the digest/);
  });

  it('refuses a chunk published on another agent\'s subject than its header claims', () => {
    const problem = chunkIdentityProblem('ferry.chunks', 'ferry.chunks.evil', 'victim/7', { agentId: 'victim', seq: 7 }, BYTES);
    assert.match(problem ?? '', /claims agent "victim" but was published on "ferry.chunks.evil"/);
  });

  it('refuses a chunk whose Nats-Msg-Id is not its chunk id, or that has none', () => {
    assert.match(chunkIdentityProblem('ferry.chunks', 'ferry.chunks.evil', 'victim/7', { agentId: 'evil', seq: 7 }, BYTES) ?? '', /Nats-Msg-Id "victim\/7" is not the chunk id "evil\/7"/);
    assert.match(chunkIdentityProblem('ferry.chunks', 'ferry.chunks.evil', 'evil/8', { agentId: 'evil', seq: 7 }, BYTES) ?? '', /not the chunk id "evil\/7"/);
    assert.match(chunkIdentityProblem('ferry.chunks', 'ferry.chunks.evil', undefined, { agentId: 'evil', seq: 7 }, BYTES) ?? '', /Nats-Msg-Id \(none\)/);
  });

  it('caps the claimed values it quotes', () => {
    const problem = chunkIdentityProblem('p', 'p.a', 'x'.repeat(10_000), { agentId: 'a', seq: 1 }, BYTES) ?? '';
    assert.ok(problem.length < 400, `quoted ${problem.length} chars`);
  });

  it('accepts a heartbeat only from the subject of the agent it names', () => {
    assert.equal(heartbeatIdentityOk('ferry.heartbeats', 'ferry.heartbeats.web-01', 'web-01'), true);
    assert.equal(heartbeatIdentityOk('ferry.heartbeats', 'ferry.heartbeats.evil', 'web-01'), false);
    assert.equal(heartbeatIdentityOk('ferry.heartbeats', 'elsewhere.web-01', 'web-01'), false);
  });
});
