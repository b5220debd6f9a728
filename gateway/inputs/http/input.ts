/**
 * The HTTP input as a gateway component: `start()` listens on http.listen, `stop(deadline)`
 * drains, `health()` says whether it listens.
 *
 * Drain (stop): new chunk and produce requests are answered 503 + Retry-After +
 * `Connection: close` at once (agents retry elsewhere or later; nothing is lost, their spool
 * keeps the chunk); requests already in flight run to their answer (their sink send finishes
 * and is acknowledged); then the server closes. At the deadline the remaining connections are
 * cut: those senders got no answer and will resend, which the sink deduplicates.
 */
import type { FastifyInstance } from 'fastify';
import { parseListen } from '../../../shared/config/index.js';
import type { Logger } from '../../../shared/log.js';
import { buildHttpApp, httpContextOf, newDrainState, type HttpAppOptions } from './app.js';
import { TokenAuth } from './auth.js';
import type { DrainState, HttpConfig } from './context.js';

/** What buildHttpApp takes, less the drain state, which the input owns. */
export type HttpInputOptions = Omit<HttpAppOptions, 'state'>;

export class HttpInput {
  readonly app: FastifyInstance;
  readonly #state: DrainState = newDrainState();
  readonly #config: HttpConfig;
  readonly #log: Logger;
  #listening = false;
  #address = '';

  constructor(opts: HttpInputOptions) {
    this.#config = opts.config;
    this.#log = opts.log.child({ component: 'http-input' });
    this.app = buildHttpApp({ ...opts, state: this.#state });
  }

  /** Listens; resolves with the bound address (`host:port`, port 0 resolved). */
  async start(): Promise<string> {
    const { host, port } = parseListen(this.#config.listen);
    await this.app.listen({ host, port });
    const addr = this.app.server.address();
    const boundPort = addr !== null && typeof addr === 'object' ? addr.port : port;
    this.#address = `${host.includes(':') ? `[${host}]` : host}:${boundPort}`;
    this.#listening = true;
    this.#log.info({ listen: this.#address, tls: this.#config.tls !== undefined }, 'HTTP input listening');
    return this.#address;
  }

  get address(): string {
    return this.#address;
  }

  get inflight(): number {
    return this.#state.inflight;
  }

  /** Stops accepting chunks (503), waits for in-flight requests until `deadlineMs`, closes. */
  async stop(deadlineMs: number): Promise<void> {
    this.#state.draining = true;
    if (this.#state.inflight > 0) {
      this.#log.info({ inflight: this.#state.inflight }, 'draining: waiting for in-flight requests');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.max(0, deadlineMs - Date.now()));
        this.#state.onIdle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#state.onIdle = null;
      if (this.#state.inflight > 0) this.#log.warn({ inflight: this.#state.inflight }, 'shutdown deadline reached with requests in flight; their senders will resend');
    }
    const closing = this.app.close();
    const remaining = Math.max(0, deadlineMs - Date.now());
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      closing.then(() => false),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(true), remaining);
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      this.app.server.closeAllConnections();
      await closing;
    }
    this.#listening = false;
    this.#log.info('HTTP input stopped');
  }

  /**
   * Replaces the accepted tokens (config reload). Requests already authenticated keep their
   * credential; the next ones are checked against the new list.
   */
  setTokens(tokens: HttpConfig['tokens']): void {
    const ctx = httpContextOf(this.app);
    const auth = new TokenAuth(tokens, ctx.reserved);
    ctx.auth = auth;
    if (!auth.enabled) this.#log.warn('http.tokens is now empty: the HTTP input accepts requests without authentication');
    this.#log.info({ tokens: tokens.length }, 'HTTP tokens reloaded');
  }

  health(): { ready: boolean; detail: string } {
    if (this.#state.draining) return { ready: false, detail: 'http: draining' };
    if (!this.#listening) return { ready: false, detail: 'http: not listening' };
    return { ready: true, detail: `http: listening on ${this.#address}` };
  }
}
