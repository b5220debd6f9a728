/**
 * HTTP answers for refused requests: one status and one stable `FERRY_*` code per condition,
 * body `{ "error": { "code", "message" } }` (shared/protocol.ts ErrorBody). Handlers throw
 * HttpError; the app's error handler (app.ts) also maps fastify's own errors (body too large,
 * unsupported media type, malformed JSON) onto the same shape.
 */
import type { FastifyError } from 'fastify';
import type { ErrorBody } from '../../../shared/protocol.js';

export type HttpErrorCode =
  | 'FERRY_BAD_REQUEST'
  | 'FERRY_CHUNK_MALFORMED'
  | 'FERRY_CHUNK_VERSION'
  | 'FERRY_HEARTBEAT_MALFORMED'
  | 'FERRY_UNAUTHORIZED'
  | 'FERRY_TOPIC_FORBIDDEN'
  | 'FERRY_AGENT_FORBIDDEN'
  | 'FERRY_TOO_MANY_RECORDS'
  | 'FERRY_REQUEST_TIMEOUT'
  | 'FERRY_NOT_FOUND'
  | 'FERRY_BODY_TOO_LARGE'
  | 'FERRY_UNSUPPORTED_MEDIA_TYPE'
  | 'FERRY_RECORD_REFUSED'
  | 'FERRY_NOT_SUPPORTED'
  | 'FERRY_KAFKA_UNAVAILABLE'
  | 'FERRY_SHUTTING_DOWN'
  | 'FERRY_BUSY'
  | 'FERRY_INTERNAL';

/** A refused request. `retryAfterMs` becomes a Retry-After header (whole seconds, at least 1). */
export class HttpError extends Error {
  readonly statusCode: number;
  readonly code: HttpErrorCode;
  readonly retryAfterMs: number | undefined;
  constructor(statusCode: number, code: HttpErrorCode, message: string, opts: { retryAfterMs?: number; cause?: unknown } = {}) {
    super(message, { cause: opts.cause });
    this.name = 'HttpError';
    this.statusCode = statusCode;
    this.code = code;
    this.retryAfterMs = opts.retryAfterMs;
  }
}

export function errorBody(code: string, message: string): ErrorBody {
  return { error: { code, message } };
}

export function retryAfterSeconds(ms: number): string {
  return String(Math.max(1, Math.ceil(ms / 1000)));
}

/** fastify's own client errors, by their FST_* code. */
const FASTIFY_CODES: Record<string, { status: number; code: HttpErrorCode; message?: string }> = {
  FST_ERR_CTP_BODY_TOO_LARGE: { status: 413, code: 'FERRY_BODY_TOO_LARGE' },
  FST_ERR_CTP_INVALID_MEDIA_TYPE: { status: 415, code: 'FERRY_UNSUPPORTED_MEDIA_TYPE' },
  FST_ERR_CTP_INVALID_TYPE: { status: 415, code: 'FERRY_UNSUPPORTED_MEDIA_TYPE' },
  FST_ERR_CTP_EMPTY_TYPE: { status: 415, code: 'FERRY_UNSUPPORTED_MEDIA_TYPE', message: 'the request has no Content-Type' },
  FST_ERR_CTP_EMPTY_JSON_BODY: { status: 400, code: 'FERRY_BAD_REQUEST', message: 'the JSON body is empty' },
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: { status: 400, code: 'FERRY_BAD_REQUEST', message: 'Content-Length does not match the body' },
};

/** Maps any error thrown while handling a request to a status and an ErrorBody. */
export function toHttpError(err: unknown, bodyLimitBytes: number): HttpError {
  if (err instanceof HttpError) return err;
  const fe = err as Partial<FastifyError> | null;
  const known = fe && typeof fe.code === 'string' ? FASTIFY_CODES[fe.code] : undefined;
  if (known) {
    let message = known.message ?? fe?.message ?? 'request refused';
    if (known.code === 'FERRY_BODY_TOO_LARGE') message = `the request body is larger than http.bodyLimitBytes (${bodyLimitBytes} bytes)`;
    return new HttpError(known.status, known.code, message, { cause: err });
  }
  if (err instanceof SyntaxError) return new HttpError(400, 'FERRY_BAD_REQUEST', `the body is not valid JSON: ${err.message}`, { cause: err });
  const status = fe && typeof fe.statusCode === 'number' ? fe.statusCode : 500;
  if (status >= 400 && status < 500) {
    return new HttpError(status, 'FERRY_BAD_REQUEST', fe?.message ?? 'bad request', { cause: err });
  }
  return new HttpError(500, 'FERRY_INTERNAL', 'internal error while handling the request (logged by the gateway)', { cause: err });
}
