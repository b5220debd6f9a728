/**
 * Named error classes with stable `FERRY_*` codes. Callers check with `instanceof` or `code`,
 * never by matching message text. Every class passes `cause` on.
 */

export type FerryErrorCode =
  | 'FERRY_CONFIG_INVALID'
  | 'FERRY_CONFIG_READ'
  | 'FERRY_CHUNK_MALFORMED'
  | 'FERRY_CHUNK_VERSION'
  | 'FERRY_SPOOL_CORRUPT'
  | 'FERRY_SPOOL_VERSION'
  | 'FERRY_SPOOL_FULL'
  | 'FERRY_SPOOL_LOCKED'
  | 'FERRY_TRANSPORT'
  | 'FERRY_STREAM_UNSAFE'
  | 'FERRY_TOPIC_FORBIDDEN'
  | 'FERRY_KAFKA'
  | 'FERRY_SHUTDOWN_TIMEOUT'
  | 'FERRY_USAGE';

export class FerryError extends Error {
  readonly code: FerryErrorCode;
  constructor(code: FerryErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/** One problem found in a config file, with the dotted path of the key it concerns. */
export interface ConfigIssue {
  path: string;
  message: string;
}

export class ConfigError extends FerryError {
  readonly issues: readonly ConfigIssue[];
  readonly file: string | undefined;
  constructor(issues: readonly ConfigIssue[], file?: string, options?: { cause?: unknown }) {
    const where = file ? ` in ${file}` : '';
    const list = issues.map((i) => `  - ${i.path || '(root)'}: ${i.message}`).join('\n');
    super('FERRY_CONFIG_INVALID', `invalid configuration${where}:\n${list}`, options);
    this.issues = issues;
    this.file = file;
  }
}

export class ConfigReadError extends FerryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_CONFIG_READ', message, options);
  }
}

/** A chunk that cannot be decoded: truncated, wrong magic, inconsistent lengths, bad header. */
export class ChunkMalformedError extends FerryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_CHUNK_MALFORMED', message, options);
  }
}

/**
 * A chunk that holds more records than MAX_RECORDS_PER_CHUNK (shared/chunk/codec.ts): refused
 * before any record is decoded. A ChunkMalformedError (code FERRY_CHUNK_MALFORMED), so whoever
 * handles malformed chunks handles it too; the HTTP input answers it with 413.
 */
export class ChunkRecordLimitError extends ChunkMalformedError {
  readonly records: number;
  readonly limit: number;
  constructor(records: number, limit: number) {
    super(`malformed chunk: it holds ${records} records, more than the ${limit} a chunk may hold`);
    this.records = records;
    this.limit = limit;
  }
}

/** A chunk written by a newer wire version than this process understands. */
export class ChunkVersionError extends FerryError {
  readonly version: number;
  constructor(version: number) {
    super('FERRY_CHUNK_VERSION', `unsupported chunk wire version ${version}; upgrade ferry-gateway`);
    this.version = version;
  }
}

export class SpoolCorruptError extends FerryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_SPOOL_CORRUPT', message, options);
  }
}

/** The spool cannot take a write: its size cap or the free-space reserve of its filesystem is reached, or the disk is full. */
export class SpoolFullError extends FerryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_SPOOL_FULL', message, options);
  }
}

/** Another live process holds the data directory's lock (two agents must never share a spool). */
export class SpoolLockedError extends FerryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_SPOOL_LOCKED', message, options);
  }
}

export class SpoolVersionError extends FerryError {
  constructor(message: string) {
    super('FERRY_SPOOL_VERSION', message);
  }
}

export class TransportError extends FerryError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('FERRY_TRANSPORT', message, options);
  }
}

/** One setting of a JetStream stream that would delete data the system already acknowledged. */
export interface UnsafeStreamSetting {
  setting: string;
  have: unknown;
  why: string;
  fix: string;
}

/** A JetStream stream configured so that it would lose acknowledged messages; not used as is. */
export class StreamUnsafeError extends FerryError {
  readonly stream: string;
  readonly settings: readonly UnsafeStreamSetting[];
  constructor(stream: string, settings: readonly UnsafeStreamSetting[]) {
    const list = settings.map((s) => `${s.setting} is ${String(s.have)}: it ${s.why}; fix: ${s.fix}`).join('; ');
    super('FERRY_STREAM_UNSAFE', `JetStream stream "${stream}" would lose chunks the agents consider delivered, so ferry-gateway does not use it: ${list}`);
    this.stream = stream;
    this.settings = settings;
  }
}

export class TopicForbiddenError extends FerryError {
  readonly topic: string;
  constructor(topic: string, message?: string, options?: { cause?: unknown }) {
    super('FERRY_TOPIC_FORBIDDEN', message ?? `topic "${topic}" is not allowed for this sender`, options);
    this.topic = topic;
  }
}

export class KafkaError extends FerryError {
  readonly retriable: boolean;
  constructor(message: string, retriable: boolean, options?: { cause?: unknown }) {
    super('FERRY_KAFKA', message, options);
    this.retriable = retriable;
  }
}

export class UsageError extends FerryError {
  constructor(message: string) {
    super('FERRY_USAGE', message);
  }
}

/** Message of any thrown value, for logs. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
