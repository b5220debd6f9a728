/**
 * `POST /v1/heartbeats` (agent protocol: body = Heartbeat JSON -> 204, recorded in the agent
 * registry) and `GET /v1/agents` (the registry as JSON). Both need a token when tokens are
 * configured. Heartbeats are accepted while draining: they are cheap and keep the registry true.
 */
import type { FastifyInstance, FastifyPluginCallback } from 'fastify';
import { AGENT_ID_PATTERN } from '../../../shared/chunk/codec.js';
import { HTTP_AGENTS_PATH, HTTP_HEARTBEATS_PATH, PROTOCOL_VERSION, parseHeartbeat } from '../../../shared/protocol.js';
import { addRawBodyParser, parseJson } from './body.js';
import { authHook, type HttpContext } from './context.js';
import { HttpError } from './errors.js';

/** Heartbeats are small; a larger body is refused (413) before it is read. */
export const HEARTBEAT_LIMIT_BYTES = 64 * 1024;

export const heartbeatsPlugin: FastifyPluginCallback<HttpContext> = (app: FastifyInstance, ctx: HttpContext, done) => {
  app.removeContentTypeParser('application/json');
  addRawBodyParser(app, ['application/json'], Math.min(HEARTBEAT_LIMIT_BYTES, ctx.config.bodyLimitBytes));
  app.addHook('onRequest', authHook(ctx));

  app.post(HTTP_HEARTBEATS_PATH, async (req, reply) => {
    const body = req.body;
    if (!Buffer.isBuffer(body)) throw new HttpError(415, 'FERRY_UNSUPPORTED_MEDIA_TYPE', 'a heartbeat is JSON: Content-Type: application/json');
    const value = parseJson(body);
    const hb = parseHeartbeat(value);
    if (hb === null) {
      const v = (value as { v?: unknown } | null)?.v;
      const why = v !== PROTOCOL_VERSION ? `"v" must be ${PROTOCOL_VERSION}` : 'it needs agentId, host (strings), sentAtMs and spool.{chunks,bytes} (numbers)';
      throw new HttpError(400, 'FERRY_HEARTBEAT_MALFORMED', `the body is not a heartbeat: ${why}`);
    }
    if (!AGENT_ID_PATTERN.test(hb.agentId)) throw new HttpError(400, 'FERRY_HEARTBEAT_MALFORMED', `"${hb.agentId.slice(0, 64)}" is not a valid agent id`);
    ctx.agents.record(hb, 'http');
    ctx.telemetry.heartbeat();
    return reply.code(204).send();
  });

  app.get(HTTP_AGENTS_PATH, (_req, reply) => reply.send(ctx.agents.list()));
  done();
};
