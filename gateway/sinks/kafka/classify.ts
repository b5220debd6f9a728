/**
 * Sorts kafkajs errors into what the sink does next. kafkajs wraps errors (a retrier gives up
 * with KafkaJSNumberOfRetriesExceeded whose `cause` is the last error; several brokers fail
 * together as KafkaJSAggregateError): the protocol error type is looked for along the chain.
 *
 *   retry         transient: broker down, timeouts, leader moves, NOT_ENOUGH_REPLICAS, ...
 *   topic         the request touched a topic Kafka refuses (unknown, unauthorized, invalid)
 *   too-large     MESSAGE_TOO_LARGE / RECORD_LIST_TOO_LARGE: the chunk's fault when the refused
 *                 request held one record, else the settings' (maxBatchBytes above the limit)
 *   refused       the records themselves are refused (INVALID_TIMESTAMP: outside the topic's
 *                 message.timestamp.*.max.ms; INVALID_RECORD; INVALID_TOPIC_EXCEPTION): the chunk's fault
 *   fenced        another producer took over this transactional id (same gateway id twice)
 *
 * Unknown errors are `retry`: back pressure over shedding data.
 */

export type ErrorClass = 'retry' | 'topic' | 'too-large' | 'refused' | 'fenced';

const TOPIC_TYPES = new Set(['UNKNOWN_TOPIC_OR_PARTITION', 'TOPIC_AUTHORIZATION_FAILED']);
const TOO_LARGE_TYPES = new Set(['MESSAGE_TOO_LARGE', 'RECORD_LIST_TOO_LARGE']);
const REFUSED_TYPES = new Set(['INVALID_TIMESTAMP', 'INVALID_RECORD', 'INVALID_TOPIC_EXCEPTION']);
const FENCED_TYPES = new Set(['PRODUCER_FENCED', 'INVALID_PRODUCER_EPOCH', 'TRANSACTIONAL_ID_AUTHORIZATION_FAILED']);

interface ErrorLike {
  name?: unknown;
  type?: unknown;
  cause?: unknown;
  originalError?: unknown;
  errors?: unknown;
}

/** Every protocol error type (`err.type`) found along the cause chain, outermost first. */
export function errorTypes(err: unknown): string[] {
  const out: string[] = [];
  const seen = new Set<unknown>();
  const visit = (e: unknown, depth: number): void => {
    if (e === null || typeof e !== 'object' || seen.has(e) || depth > 8) return;
    seen.add(e);
    const o = e as ErrorLike;
    if (typeof o.type === 'string') out.push(o.type);
    visit(o.cause, depth + 1);
    visit(o.originalError, depth + 1);
    if (Array.isArray(o.errors)) for (const x of o.errors) visit(x, depth + 1);
  };
  visit(err, 0);
  return out;
}

export function classifyError(err: unknown): ErrorClass {
  const types = errorTypes(err);
  if (types.some((t) => FENCED_TYPES.has(t))) return 'fenced';
  if (types.some((t) => TOO_LARGE_TYPES.has(t))) return 'too-large';
  if (types.some((t) => REFUSED_TYPES.has(t))) return 'refused';
  if (types.some((t) => TOPIC_TYPES.has(t))) return 'topic';
  return 'retry';
}

/** A short label for the errors metric: the protocol type, else the error's class name. */
export function errorLabel(err: unknown): string {
  const t = errorTypes(err)[0];
  if (t !== undefined) return t;
  if (err instanceof Error) return err.name;
  return 'unknown';
}
