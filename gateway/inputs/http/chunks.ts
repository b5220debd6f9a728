/**
 * `POST /v1/chunks`: the agent protocol's HTTP transport (shared/protocol.ts).
 *
 * body = one encoded chunk (`Content-Type: application/vnd.ferry.chunk`, optional
 * `Content-Encoding: gzip`) -> decodeChunk (more than MAX_RECORDS_PER_CHUNK records: 413 before
 * any record is decoded) -> agent id and topic allowed for the token? (403) -> sink -> 200
 * ChunkAck only once Kafka has every record (duplicate=true when the chunk was already
 * committed, or was in flight through this gateway). A resend of the same chunk is safe: the
 * sink deduplicates by `agentId/seq`.
 */
import type { FastifyInstance, FastifyPluginCallback } from 'fastify';
import { CHUNK_CONTENT_TYPE, chunkId, decodeChunk, type DecodedChunk } from '../../../shared/chunk/codec.js';
import { ChunkRecordLimitError, ChunkVersionError } from '../../../shared/errors.js';
import { HTTP_CHUNKS_PATH, type ChunkAck } from '../../../shared/protocol.js';
import { checkAgent, checkTopic } from './auth.js';
import { addRawBodyParser } from './body.js';
import { authHook, admissionHook, tracked, outcomeToHttpError, type HttpContext } from './context.js';
import { HttpError } from './errors.js';

function decode(body: Buffer): DecodedChunk {
  try {
    return decodeChunk(body);
  } catch (err) {
    if (err instanceof ChunkRecordLimitError) throw new HttpError(413, 'FERRY_TOO_MANY_RECORDS', err.message, { cause: err });
    if (err instanceof ChunkVersionError) throw new HttpError(400, 'FERRY_CHUNK_VERSION', err.message, { cause: err });
    throw new HttpError(400, 'FERRY_CHUNK_MALFORMED', err instanceof Error ? err.message : String(err), { cause: err });
  }
}

export const chunksPlugin: FastifyPluginCallback<HttpContext> = (app: FastifyInstance, ctx: HttpContext, done) => {
  addRawBodyParser(app, [CHUNK_CONTENT_TYPE], ctx.config.bodyLimitBytes);
  app.addHook('onRequest', authHook(ctx));
  app.addHook('onRequest', admissionHook(ctx));

  app.post(HTTP_CHUNKS_PATH, async (req, reply): Promise<ChunkAck> => {
    const cred = req.ferryCredential!;
    const body = req.body;
    if (!Buffer.isBuffer(body)) {
      throw new HttpError(415, 'FERRY_UNSUPPORTED_MEDIA_TYPE', `the body must be one encoded chunk with Content-Type: ${CHUNK_CONTENT_TYPE}`);
    }
    ctx.telemetry.received('chunk', body.length);
    const fields: Record<string, unknown> = { source: cred.name, remote: req.ip };
    // The agent names the chunk in a header too: logs of a chunk that does not decode need it.
    const claimed = req.headers['ferry-chunk-id'];
    if (typeof claimed === 'string') fields.chunk = claimed.slice(0, 200);
    try {
      return await tracked(ctx, async () => {
        const chunk = decode(body);
        const { header } = chunk;
        const id = chunkId(header.agentId, header.seq);
        fields.chunk = id;
        fields.topic = header.topic;
        checkAgent(cred, header.agentId);
        checkTopic(cred, header.topic);
        const outcome = await ctx.caller.send({ chunk, source: cred.name }, id);
        if (outcome.kind !== 'ok') throw outcomeToHttpError(outcome, header.topic, ctx.config.retryAfterMs);
        ctx.telemetry.accepted('chunk', fields, chunk.count, outcome.duplicate);
        void reply.code(200);
        return { id, duplicate: outcome.duplicate, records: chunk.count };
      });
    } catch (err) {
      if (err instanceof HttpError) {
        if (err.statusCode === 503) ctx.telemetry.retry('chunk', fields, err.message);
        else ctx.telemetry.refused('chunk', fields, err.statusCode, err.code, err.message);
      }
      throw err;
    }
  });
  done();
};
