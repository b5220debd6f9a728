/**
 * `POST /v1/heartbeats` (agent protocol: body = Heartbeat JSON -> 204, recorded in the agent
 * registry) and `GET /v1/agents` (the registry as JSON). Both need a token when tokens are
 * configured; a heartbeat must name an agent id the token may claim (`http.tokens[].agents`,
 * else 403 FERRY_AGENT_FORBIDDEN), and `GET /v1/agents` lists only those agents. Only the
 * validated, length-capped copy parseHeartbeat makes is recorded. Heartbeats are accepted while
 * draining: they are cheap and keep the registry true.
 */
import type { FastifyInstance, FastifyPluginCallback } from 'fastify';
import { AGENT_ID_PATTERN } from '../../../shared/chunk/codec.js';
import { HTTP_AGENTS_PATH, HTTP_HEARTBEATS_PATH, PROTOCOL_VERSION, parseHeartbeat } from '../../../shared/protocol.js';
import { addRawBodyParser, parseJson } from './body.js';
import { checkAgent } from './auth.js';
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
      const { v, agentId } = (value ?? {}) as { v?: unknown; agentId?: unknown };
      const why =
        v !== PROTOCOL_VERSION
          ? `"v" must be ${PROTOCOL_VERSION}`
          : typeof agentId === 'string' && !AGENT_ID_PATTERN.test(agentId)
            ? `"${agentId.slice(0, 64)}" is not a valid agent id`
            : 'it needs agentId, host (strings), sentAtMs and spool.{chunks,bytes} (non-negative numbers)';
      throw new HttpError(400, 'FERRY_HEARTBEAT_MALFORMED', `the body is not a heartbeat: ${why}`);
    }
    checkAgent(req.ferryCredential!, hb.agentId);
    ctx.agents.record(hb, 'http');
    ctx.telemetry.heartbeat();
    return reply.code(204).send();
  });

  app.get(HTTP_AGENTS_PATH, (req, reply) => {
    const cred = req.ferryCredential!;
    return reply.send(ctx.agents.list().filter((a) => cred.agents.matches(a.id)));
  });
  done();
};
