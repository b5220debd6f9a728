/**
 * `POST /topics/:topic`: a JSON produce endpoint shaped like Confluent REST Proxy v2, for
 * senders that are not Ferry agents.
 *
 *   (also `POST /topics/:topic/partitions/:partition`: every record to that partition)
 *   request  { "records": [ { "key"?, "value", "partition"?, "headers"? }, ... ] }
 *   answer   { "key_schema_id": null, "value_schema_id": null,
 *              "offsets": [ { "partition", "offset", "error_code", "error" }, ... ] }
 *
 * Serialization, chosen by Content-Type (as the REST proxy does):
 * - `application/vnd.kafka.json.v2+json` (also `application/vnd.kafka.v2+json` and
 *   `application/json`): key and value are any JSON value and are written as their JSON text
 *   (UTF-8): the value `"abc"` becomes the 5 bytes `"abc"`, `{"a":1}` becomes `{"a":1}`.
 * - `application/vnd.kafka.binary.v2+json`: key and value are base64 strings, written as the
 *   decoded bytes.
 * A missing or null key means no key. `headers` (an extension; v2 has none) is an object
 * `{ "name": "value" }` or a list `[{ "name", "value" }]`; header values are strings, written
 * as UTF-8 in the json format and base64-decoded in the binary format. `partition` picks the
 * partition; otherwise the producer partitions by key.
 *
 * Semantics: the whole request is one unit, produced through the same Sink as agents' chunks
 * (`SinkChunk.records`, one synthetic chunk per request): 200 only after Kafka acknowledged
 * every record; 503 + Retry-After when Kafka is unavailable (nothing is committed in
 * exactly-once mode; in at-least-once mode a retry may duplicate what part of a failed request
 * reached Kafka). Unlike Ferry chunks, these records are not deduplicated: a client retry
 * produces them again (at-least-once, as with the REST proxy).
 *
 * Limitation: the sink does not report partitions and offsets, so `offset` is always null and
 * `partition` is the one requested (null when the producer chose). Requests that need keys,
 * headers or partitions answer 501 if the sink cannot honour them (`Sink.acceptsRecords`).
 */
import type { FastifyInstance, FastifyPluginCallback, FastifyRequest } from 'fastify';
import { MAX_RECORDS_PER_CHUNK, TOPIC_PATTERN, chunkFromRecords, type ChunkHeader, type DecodedChunk, type DecodedRecord } from '../../../shared/chunk/codec.js';
import type { SinkRecord } from '../../sinks/sink.js';
import { checkTopic } from './auth.js';
import { addRawBodyParser, parseJson } from './body.js';
import { authHook, admissionHook, tracked, outcomeToHttpError, type HttpContext } from './context.js';
import { HttpError } from './errors.js';

export const PRODUCE_PATH = '/topics/:topic';
export const PRODUCE_PARTITION_PATH = '/topics/:topic/partitions/:partition';
export const JSON_V2 = 'application/vnd.kafka.json.v2+json';
export const BINARY_V2 = 'application/vnd.kafka.binary.v2+json';
const GENERIC_V2 = 'application/vnd.kafka.v2+json';
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

type Format = 'json' | 'binary';

export interface ProduceResponse {
  key_schema_id: null;
  value_schema_id: null;
  offsets: Array<{ partition: number | null; offset: number | null; error_code: number | null; error: string | null }>;
}

function formatOf(contentType: string | undefined): Format {
  const type = (contentType ?? '').split(';')[0]!.trim().toLowerCase();
  return type === BINARY_V2 ? 'binary' : 'json';
}

function bad(message: string): HttpError {
  return new HttpError(400, 'FERRY_BAD_REQUEST', message);
}

function bytesOf(v: unknown, format: Format, what: string): Buffer {
  if (format === 'json') return Buffer.from(JSON.stringify(v), 'utf8');
  if (typeof v !== 'string') throw bad(`${what} must be a base64 string in the binary format`);
  const s = v.replace(/\s+/g, '');
  if (!BASE64.test(s)) throw bad(`${what} is not valid base64`);
  return Buffer.from(s, 'base64');
}

function headerBytes(v: unknown, format: Format, what: string): Buffer {
  if (typeof v !== 'string') throw bad(`${what} must be a string`);
  return format === 'binary' ? bytesOf(v, 'binary', what) : Buffer.from(v, 'utf8');
}

function parseHeaders(h: unknown, format: Format, at: string): Record<string, Buffer> | undefined {
  if (h === undefined || h === null) return undefined;
  const out: Record<string, Buffer> = {};
  if (Array.isArray(h)) {
    h.forEach((e: unknown, j) => {
      if (e === null || typeof e !== 'object' || typeof (e as { name?: unknown }).name !== 'string') {
        throw bad(`${at}.headers[${j}] must be { "name": string, "value": string }`);
      }
      const { name, value } = e as { name: string; value: unknown };
      out[name] = headerBytes(value, format, `${at}.headers[${j}].value`);
    });
    return out;
  }
  if (typeof h !== 'object') throw bad(`${at}.headers must be an object or a list of { name, value }`);
  for (const [name, value] of Object.entries(h as Record<string, unknown>)) out[name] = headerBytes(value, format, `${at}.headers.${name}`);
  return out;
}

/** Validates the request body; every message names the record and field that is wrong. */
export function parseProduceBody(body: unknown, format: Format): SinkRecord[] {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw bad('the body must be a JSON object { "records": [...] }');
  const records = (body as { records?: unknown }).records;
  if (!Array.isArray(records)) throw bad('"records" must be a list');
  if (records.length === 0) throw bad('"records" is empty');
  if (records.length > MAX_RECORDS_PER_CHUNK) {
    throw new HttpError(413, 'FERRY_TOO_MANY_RECORDS', `"records" holds ${records.length} records; at most ${MAX_RECORDS_PER_CHUNK} per request`);
  }
  return records.map((r: unknown, i): SinkRecord => {
    const at = `records[${i}]`;
    if (r === null || typeof r !== 'object' || Array.isArray(r)) throw bad(`${at} must be an object`);
    const o = r as Record<string, unknown>;
    for (const k of Object.keys(o)) {
      if (k !== 'key' && k !== 'value' && k !== 'partition' && k !== 'headers') throw bad(`${at}.${k} is not a record field (key, value, partition, headers)`);
    }
    if (o.value === undefined || o.value === null) throw bad(`${at}.value is missing (null values are not supported)`);
    const rec: SinkRecord = {
      key: o.key === undefined || o.key === null ? null : bytesOf(o.key, format, `${at}.key`),
      value: bytesOf(o.value, format, `${at}.value`),
    };
    if (o.partition !== undefined && o.partition !== null) {
      if (typeof o.partition !== 'number' || !Number.isSafeInteger(o.partition) || o.partition < 0) throw bad(`${at}.partition must be a non-negative integer`);
      rec.partition = o.partition;
    }
    const headers = parseHeaders(o.headers, format, at);
    if (headers) rec.headers = headers;
    return rec;
  });
}

/** Unique, increasing ids for produce requests of this process (the sink does not dedup them). */
class SyntheticIds {
  #last = 0;
  next(): number {
    this.#last = Math.max(this.#last + 1, Date.now() * 1000);
    return this.#last;
  }
}

/** The synthetic chunk that carries a produce request through the sink. */
export function syntheticChunk(agentId: string, seq: number, host: string, topic: string, records: readonly SinkRecord[]): DecodedChunk {
  const decoded: DecodedRecord[] = [];
  let offset = 0;
  for (const r of records) {
    decoded.push({ offset, value: r.value, flags: 0 });
    offset += r.value.length;
  }
  const header: ChunkHeader = {
    agentId,
    seq,
    host,
    path: `/topics/${topic}`,
    topic,
    file: { dev: '0', ino: '0', fingerprint: '' },
    offsetStart: 0,
    offsetEnd: offset,
    lineCount: records.length,
    readAtMs: Date.now(),
  };
  return chunkFromRecords(header, decoded);
}

export const producePlugin: FastifyPluginCallback<HttpContext> = (app: FastifyInstance, ctx: HttpContext, done) => {
  app.removeContentTypeParser('application/json');
  addRawBodyParser(app, [JSON_V2, BINARY_V2, GENERIC_V2, 'application/json'], ctx.config.bodyLimitBytes);
  app.addHook('onRequest', authHook(ctx));
  app.addHook('onRequest', admissionHook(ctx));
  // The REST proxy's media type on every answer (errors carry error_code too: see app.ts).
  app.addHook('onSend', async (_req, reply, payload) => {
    void reply.header('content-type', GENERIC_V2);
    return payload;
  });

  const ids = new SyntheticIds();
  const agentId = `rest.${ctx.gatewayId}`.slice(0, 128);

  const handler = async (req: FastifyRequest<{ Params: { topic: string; partition?: string } }>): Promise<ProduceResponse> => {
    const cred = req.ferryCredential!;
    const topic = req.params.topic;
    const fields: Record<string, unknown> = { source: cred.name, remote: req.ip, topic };
    try {
      if (!TOPIC_PATTERN.test(topic)) throw bad(`"${topic.slice(0, 64)}" is not a valid Kafka topic name`);
      checkTopic(cred, topic);
      const body = req.body;
      if (!Buffer.isBuffer(body)) {
        throw new HttpError(415, 'FERRY_UNSUPPORTED_MEDIA_TYPE', `the body must be JSON with Content-Type: ${JSON_V2} or ${BINARY_V2}`);
      }
      ctx.telemetry.received('produce', body.length);
      const records = parseProduceBody(parseJson(body), formatOf(req.headers['content-type']));
      if (req.params.partition !== undefined) {
        // POST /topics/:topic/partitions/:partition: every record goes to that partition.
        const partition = /^\d{1,9}$/.test(req.params.partition) ? Number(req.params.partition) : NaN;
        if (Number.isNaN(partition)) throw bad(`partition "${req.params.partition.slice(0, 32)}" in the path is not a non-negative integer`);
        records.forEach((r, i) => {
          if (r.partition !== undefined && r.partition !== partition) throw bad(`records[${i}].partition ${r.partition} differs from the partition ${partition} in the path`);
          r.partition = partition;
        });
      }
      const needsRecords = records.some((r) => r.key !== null || r.partition !== undefined || r.headers !== undefined);
      if (needsRecords && ctx.sink.acceptsRecords !== true) {
        throw new HttpError(501, 'FERRY_NOT_SUPPORTED', 'this gateway\'s Kafka sink cannot produce records with keys, headers or partitions yet; send values only');
      }
      const chunk = syntheticChunk(agentId, ids.next(), cred.name, topic, records);
      const item = ctx.sink.acceptsRecords === true ? { chunk, source: cred.name, records } : { chunk, source: cred.name };
      const outcome = await tracked(ctx, () => ctx.caller.send(item, null));
      if (outcome.kind !== 'ok') throw outcomeToHttpError(outcome, topic, ctx.config.retryAfterMs);
      ctx.telemetry.accepted('produce', fields, records.length, false);
      return {
        key_schema_id: null,
        value_schema_id: null,
        offsets: records.map((r) => ({ partition: r.partition ?? null, offset: null, error_code: null, error: null })),
      };
    } catch (err) {
      if (err instanceof HttpError) {
        if (err.statusCode === 503) ctx.telemetry.retry('produce', fields, err.message);
        else ctx.telemetry.refused('produce', fields, err.statusCode, err.code, err.message);
      }
      throw err;
    }
  };
  app.post(PRODUCE_PATH, handler);
  app.post(PRODUCE_PARTITION_PATH, handler);
  done();
};
