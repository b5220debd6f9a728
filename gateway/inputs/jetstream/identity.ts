/**
 * Identity binding for what arrives over NATS: an agent publishes its chunks on
 * `<subjectPrefix>.<agentId>` and its heartbeats on `<heartbeatSubject>.<agentId>` (see
 * shared/protocol.ts), and NATS permissions can restrict each agent's credentials to its own
 * subjects. The subject is therefore the identity the gateway trusts; what the payload claims
 * must agree with it:
 * - a chunk's `header.agentId` equals the subject's agent id, and its `Nats-Msg-Id` is
 *   `agentId/seq/<digest of the payload>` (shared/protocol.ts chunkMsgId), or `agentId/seq` as
 *   agents before the digest sent it (otherwise agent `evil` could have its chunk produced, and
 *   committed, under agent `victim`'s id, and the genuine `victim` chunk would then be dropped
 *   as a duplicate). The digest is what keeps JetStream itself from dropping the genuine chunk:
 *   its duplicate window is stream-wide, and only a sender with the exact bytes can name them;
 * - a heartbeat's `agentId` equals the subject's agent id.
 * Pure functions; messages quote claimed values capped in length.
 */
import { chunkId, type ChunkHeader } from '../../../shared/chunk/codec.js';
import { chunkDigest } from '../../../shared/protocol.js';

const QUOTE_MAX = 160;

function quote(s: string): string {
  return JSON.stringify(s.length > QUOTE_MAX ? `${s.slice(0, QUOTE_MAX)}...` : s);
}

/** The agent id a subject `<prefix>.<agentId>` names, or undefined when it names none. */
export function subjectAgentId(prefix: string, subject: string): string | undefined {
  if (!subject.startsWith(`${prefix}.`)) return undefined;
  const id = subject.slice(prefix.length + 1);
  return id.length > 0 ? id : undefined;
}

/**
 * Why a chunk's claims do not match the subject it was published on and its Nats-Msg-Id, or
 * undefined when they do. `payload` is the encoded chunk the digest is checked against.
 */
export function chunkIdentityProblem(prefix: string, subject: string, msgId: string | undefined, header: Pick<ChunkHeader, 'agentId' | 'seq'>, payload: Uint8Array): string | undefined {
  const agent = subjectAgentId(prefix, subject);
  if (agent === undefined) return `subject ${quote(subject)} does not name an agent (${prefix}.<agentId>)`;
  if (header.agentId !== agent) return `the chunk claims agent ${quote(header.agentId)} but was published on ${quote(subject)} (agent ${quote(agent)})`;
  const want = chunkId(header.agentId, header.seq);
  if (msgId === want) return undefined;
  const shown = msgId === undefined ? '(none)' : quote(msgId);
  if (msgId === undefined || !msgId.startsWith(`${want}/`)) return `Nats-Msg-Id ${shown} is not the chunk id ${quote(want)} (followed by /<digest of the chunk>)`;
  if (msgId.slice(want.length + 1) !== chunkDigest(payload)) return `Nats-Msg-Id ${shown} does not carry the digest of the chunk's bytes`;
  return undefined;
}

/** True when a heartbeat published on `subject` speaks for the agent the subject names. */
export function heartbeatIdentityOk(prefix: string, subject: string, agentId: string): boolean {
  return subjectAgentId(prefix, subject) === agentId;
}
