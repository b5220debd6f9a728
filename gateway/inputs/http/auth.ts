/**
 * Bearer-token authentication for the HTTP input.
 *
 * `http.tokens` entries are strings (full trust: every topic, every agent id) or
 * `{ token, allowTopics, agents, name }` (`agents` defaults to none: such a token may produce
 * but not send chunks or heartbeats in an agent's name). Tokens are kept only as SHA-256 digests; a presented token is hashed and compared with every
 * configured digest using `crypto.timingSafeEqual` (equal-length digests, so neither the length
 * nor the content of a token leaks through timing, and all entries are always compared).
 * No tokens configured (the config allows it only with `http.allowAnonymous: true`) means no
 * authentication: every request is the `anonymous` credential, all topics and agent ids
 * allowed; the input logs a warning at start. Reserved topics (gateway/topics.ts) are refused
 * for every credential.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { DEFAULT_RESERVED, PatternSet, TopicPolicy, type ReservedTopics } from '../../topics.js';
import type { GatewayConfig } from '../../config.js';
import { HttpError } from './errors.js';

export interface Credential {
  /** the token's `name`, or `token-<n>` (1-based position in http.tokens), or `anonymous` */
  name: string;
  topics: TopicPolicy;
  /** agent ids this credential may send chunks and heartbeats for */
  agents: PatternSet;
  /** chunk and produce requests of this credential admitted and not yet answered */
  active: number;
}

type TokenEntry = NonNullable<GatewayConfig['http']>['tokens'][number];

interface Stored {
  digest: Buffer;
  credential: Credential;
}

function sha256(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class TokenAuth {
  readonly #stored: Stored[];
  readonly anonymous: Credential | null;

  constructor(tokens: readonly TokenEntry[], reserved: ReservedTopics = DEFAULT_RESERVED) {
    const credential = (name: string, topics: readonly string[], agents: readonly string[]): Credential => ({
      name,
      topics: new TopicPolicy(topics, reserved),
      agents: new PatternSet(agents, 'agent pattern'),
      active: 0,
    });
    this.#stored = tokens.map((t, i) => {
      const entry = typeof t === 'string' ? { token: t, allowTopics: ['*'], agents: ['*'], name: undefined } : t;
      return { digest: sha256(entry.token), credential: credential(entry.name ?? `token-${i + 1}`, entry.allowTopics, entry.agents) };
    });
    this.anonymous = this.#stored.length === 0 ? credential('anonymous', ['*'], ['*']) : null;
  }

  get enabled(): boolean {
    return this.anonymous === null;
  }

  /**
   * The credential of an `Authorization` header value; throws HttpError 401 when tokens are
   * configured and the header is missing, not a bearer token, or no token matches.
   */
  authenticate(header: string | undefined): Credential {
    if (this.anonymous) return this.anonymous;
    if (header === undefined || header === '') {
      throw new HttpError(401, 'FERRY_UNAUTHORIZED', 'missing Authorization header (expected "Bearer <token>")');
    }
    const m = /^Bearer[ ]+(\S+)\s*$/i.exec(header);
    if (!m) throw new HttpError(401, 'FERRY_UNAUTHORIZED', 'the Authorization header is not "Bearer <token>"');
    const digest = sha256(m[1]!);
    let found: Credential | null = null;
    for (const s of this.#stored) {
      // No early exit: every configured token is compared.
      if (timingSafeEqual(digest, s.digest) && found === null) found = s.credential;
    }
    if (!found) throw new HttpError(401, 'FERRY_UNAUTHORIZED', 'the bearer token is not valid');
    return found;
  }
}

/** Throws HttpError 403 when the credential may not write to `topic` (or nobody may). */
export function checkTopic(cred: Credential, topic: string): void {
  const reserved = cred.topics.reservedReason(topic);
  if (reserved !== null) throw new HttpError(403, 'FERRY_TOPIC_FORBIDDEN', `topic "${topic}" cannot be written by any sender: ${reserved}`);
  if (!cred.topics.allows(topic)) {
    throw new HttpError(403, 'FERRY_TOPIC_FORBIDDEN', `topic "${topic}" is not allowed for credential "${cred.name}" (allowed: ${cred.topics.describe()})`);
  }
}

/** Throws HttpError 403 when the credential may not send chunks or heartbeats as `agentId`. */
export function checkAgent(cred: Credential, agentId: string): void {
  if (!cred.agents.matches(agentId)) {
    throw new HttpError(403, 'FERRY_AGENT_FORBIDDEN', `agent id "${agentId}" is not allowed for credential "${cred.name}" (agents: ${cred.agents.describe()})`);
  }
}
