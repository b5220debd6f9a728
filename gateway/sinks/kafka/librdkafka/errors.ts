/**
 * librdkafka errors -> Ferry's KafkaError carrying the Kafka protocol error name as `type`
 * (the names kafkajs uses, which classify.ts looks for), so the core sorts both drivers' errors
 * the same way.
 *
 * Broker errors keep their protocol code in librdkafka (`ERR_MSG_SIZE_TOO_LARGE` is 10, the
 * protocol's MESSAGE_TOO_LARGE); their names mostly differ only by the `ERR_` prefix, and the
 * few that differ otherwise are listed below. Local errors (`ERR__*`, negative codes) that mean
 * a protocol condition are mapped to it (a fenced transactional producer, an unknown topic or
 * partition); the other local errors keep librdkafka's name (e.g. `ERR__MSG_TIMED_OUT`), which
 * classify.ts treats as transient. `ERR__FATAL` stands for the producer's fatal error, which an
 * earlier call returned (isFatal): that one's name is used when known.
 */
import { KafkaError } from '../../../../shared/errors.js';
import type { NativeError } from './native.js';

/** librdkafka names whose protocol name is not just the name without `ERR_`. */
const RENAMED: Readonly<Record<string, string>> = {
  ERR_UNKNOWN_TOPIC_OR_PART: 'UNKNOWN_TOPIC_OR_PARTITION',
  ERR_MSG_SIZE_TOO_LARGE: 'MESSAGE_TOO_LARGE',
  ERR_TOPIC_EXCEPTION: 'INVALID_TOPIC_EXCEPTION',
  ERR_NOT_LEADER_FOR_PARTITION: 'NOT_LEADER_FOR_PARTITION',
  ERR__FENCED: 'PRODUCER_FENCED',
  ERR__UNKNOWN_TOPIC: 'UNKNOWN_TOPIC_OR_PARTITION',
  ERR__UNKNOWN_PARTITION: 'UNKNOWN_TOPIC_OR_PARTITION',
};

/** Types that no retry with the same records and settings can fix. */
const PERMANENT = new Set([
  'UNKNOWN_TOPIC_OR_PARTITION',
  'MESSAGE_TOO_LARGE',
  'RECORD_LIST_TOO_LARGE',
  'INVALID_TIMESTAMP',
  'INVALID_RECORD',
  'INVALID_TOPIC_EXCEPTION',
  'TOPIC_AUTHORIZATION_FAILED',
  'CLUSTER_AUTHORIZATION_FAILED',
  'TRANSACTIONAL_ID_AUTHORIZATION_FAILED',
  'PRODUCER_FENCED',
  'INVALID_PRODUCER_EPOCH',
  'ERR__INVALID_ARG',
]);

/** librdkafka error code -> name, from the library's own table (`CODES.ERRORS`). */
export type CodeNames = ReadonlyMap<number, string>;

export function codeNames(table: Readonly<Record<string, number>>): CodeNames {
  const m = new Map<number, string>();
  for (const [name, code] of Object.entries(table)) if (!m.has(code)) m.set(code, name);
  return m;
}

/** The protocol error name (or librdkafka's name for a local error) of a librdkafka error code. */
export function kafkaType(code: number, names: CodeNames): string {
  const name = names.get(code);
  return name === undefined ? `LIBRDKAFKA_${code}` : typeOfName(name, code);
}

/** The type for librdkafka's name of an error (`ERR_MSG_SIZE_TOO_LARGE`, `ERR__MSG_TIMED_OUT`). */
function typeOfName(name: string, code: number): string {
  const renamed = RENAMED[name];
  if (renamed !== undefined) return renamed;
  return code >= 0 && name.startsWith('ERR_') ? name.slice(4) : name;
}

/**
 * The error for a librdkafka error as rd_kafka_err2name() names it (`MSG_SIZE_TOO_LARGE`,
 * `_MSG_TIMED_OUT`: the batch addon's names), for the batch producer's `toError`.
 */
export function errorFromName(code: number, err2name: string, message: string, cause?: unknown): LibrdkafkaError {
  const type = typeOfName(`ERR_${err2name}`, code);
  return new LibrdkafkaError(`${message} (${type})`, type, code, cause);
}

/** A KafkaError whose `type` is the protocol error name; `cause` is the library's error. */
export class LibrdkafkaError extends KafkaError {
  readonly type: string;
  /** librdkafka's error code */
  readonly rdkafkaCode: number;
  constructor(message: string, type: string, rdkafkaCode: number, cause?: unknown) {
    super(message, !PERMANENT.has(type), cause === undefined ? undefined : { cause });
    this.type = type;
    this.rdkafkaCode = rdkafkaCode;
  }
}

export interface ErrorContext {
  names: CodeNames;
  /** the producer's fatal error (a call's error with isFatal), when one was returned */
  fatal?: NativeError | undefined;
}

/**
 * Wraps a librdkafka error (`what`: the operation, for the message). ERR__FATAL takes the type
 * of the fatal error behind it, when known.
 */
export function toKafkaError(err: unknown, what: string, ctx: ErrorContext): KafkaError {
  if (err instanceof KafkaError) return err;
  const e = err as Partial<NativeError> | null | undefined;
  const code = typeof e?.code === 'number' ? e.code : undefined;
  const message = e instanceof Error || typeof e?.message === 'string' ? String(e.message) : String(err);
  if (code === undefined) return new KafkaError(`${what}: ${message}`, true, { cause: err });
  const type = kafkaType(code, ctx.names);
  const fatal = ctx.fatal;
  if (type === 'ERR__FATAL' && fatal !== undefined && fatal !== err && typeof fatal.code === 'number') {
    const underlying = kafkaType(fatal.code, ctx.names);
    return new LibrdkafkaError(`${what}: ${message}; the producer's fatal error: ${fatal.message} (${underlying})`, underlying, fatal.code, err);
  }
  return new LibrdkafkaError(`${what}: ${message} (${type})`, type, code, err);
}
