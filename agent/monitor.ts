/**
 * The agent's local HTTP monitor on `monitor.listen` (default 127.0.0.1:9464):
 *   GET /healthz  200 while the process runs
 *   GET /readyz   200 when the spool is open and the transport connected, else 503; JSON detail
 *   GET /metrics  Prometheus text of the process's registry
 *   GET /status   the JSON `ferry-agent status --json` prints
 * node:http, no framework: four read-only routes. Errors answer JSON `{ error: { code, message } }`.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Logger } from '../shared/log.js';
import type { Registry } from '../shared/metrics.js';
import { parseListen } from '../shared/config/index.js';
import { FerryError, errorMessage } from '../shared/errors.js';

export interface MonitorSource {
  ready(): { ok: boolean; detail: string };
  status(): unknown;
}

export interface Monitor {
  readonly host: string;
  readonly port: number;
  close(): Promise<void>;
}

function json(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body, null, 2);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store' }).end(`${text}\n`);
}

export async function startMonitor(opts: { listen: string; source: MonitorSource; registry: Registry; log: Logger }): Promise<Monitor> {
  const log = opts.log.child({ component: 'monitor' });
  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      json(res, 405, { error: { code: 'FERRY_USAGE', message: `${req.method} is not allowed; use GET` } });
      return;
    }
    switch (path) {
      case '/healthz':
        json(res, 200, { ok: true });
        return;
      case '/readyz': {
        const r = opts.source.ready();
        json(res, r.ok ? 200 : 503, r);
        return;
      }
      case '/metrics': {
        const text = await opts.registry.metrics();
        res.writeHead(200, { 'content-type': opts.registry.contentType }).end(text);
        return;
      }
      case '/status':
        json(res, 200, opts.source.status());
        return;
      default:
        json(res, 404, { error: { code: 'FERRY_USAGE', message: `no route ${path}; try /healthz, /readyz, /metrics, /status` } });
    }
  };
  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      log.error({ err, url: req.url }, 'monitor request failed');
      if (!res.headersSent) json(res, 500, { error: { code: 'FERRY_INTERNAL', message: errorMessage(err) } });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5000;
  const { host, port } = parseListen(opts.listen);
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => {
      const code = (err as NodeJS.ErrnoException).code;
      const hint = code === 'EADDRINUSE' ? ' (another ferry-agent running? set monitor.listen to another port, or monitor.enabled: false)' : '';
      reject(new FerryError('FERRY_CONFIG_INVALID', `monitor.listen ${opts.listen}: cannot listen: ${errorMessage(err)}${hint}`, { cause: err }));
    });
    server.listen(port, host, () => resolve());
  });
  const addr = server.address() as AddressInfo;
  log.info({ address: `${addr.address}:${addr.port}` }, 'monitor listening (/healthz /readyz /metrics /status)');
  return {
    host: addr.address,
    port: addr.port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Only short GETs are served: at shutdown, kept-alive connections are cut, not waited for.
        server.closeAllConnections();
      }),
  };
}
