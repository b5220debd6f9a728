// Dead letters as the JetStream input writes them (gateway/inputs/jetstream/input.ts, deadLetter()):
// the original payload with the Ferry-Dead-* headers. Shared by the unit, integration and e2e tests.
import { headers as natsHeaders, type MsgHdrs } from '@nats-io/transport-node';

export interface DeadLetterSpec {
  reason: 'malformed' | 'identity' | 'internal-topic' | 'max-deliveries' | 'refused' | 'forbidden-topic';
  error: string;
  /** the original Nats-Msg-Id, `agentId/seq[/digest]` */
  msgId?: string;
  subject?: string;
  stream?: string;
  streamSeq?: number;
}

export function deadLetterHeaders(spec: DeadLetterSpec): MsgHdrs {
  const h = natsHeaders();
  h.set('Ferry-Dead-Reason', spec.reason);
  h.set('Ferry-Dead-Error', spec.error);
  h.set('Ferry-Dead-Subject', spec.subject ?? `ferry.chunks.${spec.msgId?.split('/')[0] ?? 'agent-1'}`);
  h.set('Ferry-Dead-Stream', spec.stream ?? 'FERRY_CHUNKS');
  h.set('Ferry-Dead-Stream-Seq', String(spec.streamSeq ?? 1));
  if (spec.msgId) h.set('Ferry-Dead-Msg-Id', spec.msgId);
  return h;
}
