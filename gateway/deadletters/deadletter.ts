/**
 * One dead letter as the operator sees it. The JetStream input (inputs/jetstream/input.ts,
 * `deadLetter()`) republishes a chunk it cannot deliver to `deadLetterSubject` with the
 * original payload and these headers:
 *   Ferry-Dead-Reason      malformed | identity | internal-topic | max-deliveries | refused
 *                          (forbidden-topic from gateways before holds)
 *   Ferry-Dead-Error       the error text (one line, at most 1000 characters)
 *   Ferry-Dead-Subject     the chunk's subject (`<subjectPrefix>.<agentId>`)
 *   Ferry-Dead-Stream      the chunk stream, and Ferry-Dead-Stream-Seq its sequence there
 *   Ferry-Dead-Msg-Id      the chunk's Nats-Msg-Id (`agentId/seq/<digest>`), when it had one
 * describeDeadLetter() turns such a stored message into a DeadLetter (and the decoded chunk,
 * when it decodes). It never throws: a payload that does not decode is described as not
 * replayable, with the decoder's error; missing headers are null.
 */
import type { MsgHdrs } from '@nats-io/transport-node';
import { decodeChunk, type DecodedChunk } from '../../shared/chunk/codec.js';
import { FerryError, errorMessage } from '../../shared/errors.js';

/** A message of the dead-letter stream, however it was read (consumer or direct get). */
export interface DeadLetterMessage {
  /** sequence in the dead-letter stream: what `replay --seq` takes */
  seq: number;
  subject: string;
  headers: MsgHdrs | undefined;
  data: Uint8Array;
  /** when it was dead-lettered (stored in the dead-letter stream) */
  time: Date;
}

export interface DeadLetter {
  seq: number;
  time: string;
  bytes: number;
  reason: string | null;
  error: string | null;
  /** the original Nats-Msg-Id, `agentId/seq/<digest>` (or `agentId/seq`) */
  msgId: string | null;
  agentId: string | null;
  chunkSeq: number | null;
  subject: string | null;
  topic: string | null;
  path: string | null;
  lines: number | null;
  originalStream: string | null;
  originalSeq: number | null;
  /** false when the payload does not decode: such a chunk cannot be replayed */
  replayable: boolean;
  /** why it does not decode, with the error code */
  decodeError: string | null;
}

function header(h: MsgHdrs | undefined, name: string): string | null {
  const v = h?.get(name);
  return v ? v : null;
}

/** `agentId/seq` or `agentId/seq/<digest>` (agent ids hold no '/'). */
function parseMsgId(id: string | null): { agentId: string | null; chunkSeq: number | null } {
  const [agentId, seqText] = id?.split('/') ?? [];
  if (!agentId || seqText === undefined) return { agentId: null, chunkSeq: null };
  const seq = Number(seqText);
  return { agentId, chunkSeq: Number.isSafeInteger(seq) ? seq : null };
}

export function describeDeadLetter(m: DeadLetterMessage): { deadLetter: DeadLetter; chunk: DecodedChunk | undefined } {
  const msgId = header(m.headers, 'Ferry-Dead-Msg-Id');
  const originalSeq = Number(header(m.headers, 'Ferry-Dead-Stream-Seq') ?? NaN);
  let chunk: DecodedChunk | undefined;
  let decodeError: string | null = null;
  try {
    chunk = decodeChunk(m.data);
  } catch (err) {
    decodeError = err instanceof FerryError ? `${err.code}: ${err.message}` : errorMessage(err);
  }
  const fromId = parseMsgId(msgId);
  return {
    chunk,
    deadLetter: {
      seq: m.seq,
      time: m.time.toISOString(),
      bytes: m.data.length,
      reason: header(m.headers, 'Ferry-Dead-Reason'),
      error: header(m.headers, 'Ferry-Dead-Error'),
      msgId,
      agentId: chunk?.header.agentId ?? fromId.agentId,
      chunkSeq: chunk?.header.seq ?? fromId.chunkSeq,
      subject: header(m.headers, 'Ferry-Dead-Subject'),
      topic: chunk?.header.topic ?? null,
      path: chunk?.header.path ?? null,
      lines: chunk?.count ?? null,
      originalStream: header(m.headers, 'Ferry-Dead-Stream'),
      originalSeq: Number.isSafeInteger(originalSeq) ? originalSeq : null,
      // a forgery is never produced: replayed, it would land (and be committed) under the id of
      // the agent it impersonates
      replayable: chunk !== undefined && header(m.headers, 'Ferry-Dead-Reason') !== 'identity',
      decodeError,
    },
  };
}
