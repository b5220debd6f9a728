/**
 * The HTTP input's telemetry: one call per event writes the log line and moves the metrics.
 * Per request (chunk, produce batch, heartbeat), never per record.
 */
import { Counter, Histogram, type Registry } from '../../../shared/metrics.js';
import type { Logger } from '../../../shared/log.js';

export type ChunkResult = 'ok' | 'duplicate' | 'retry' | 'refused';

export class HttpTelemetry {
  readonly log: Logger;
  readonly #requests: Counter<'route' | 'status'>;
  readonly #chunks: Counter<'kind' | 'result'>;
  readonly #records: Counter<'kind'>;
  readonly #bytes: Counter<'kind'>;
  readonly #heartbeats: Counter;
  readonly #duration: Histogram<'route'>;

  constructor(log: Logger, registry: Registry) {
    this.log = log;
    const registers = [registry];
    this.#requests = new Counter({
      name: 'ferry_gateway_http_requests_total',
      help: 'HTTP requests answered, by route and status code',
      labelNames: ['route', 'status'],
      registers,
    });
    this.#chunks = new Counter({
      name: 'ferry_gateway_http_chunks_total',
      help: 'chunks (kind=chunk) and produce batches (kind=produce) received over HTTP, by result: ok, duplicate, retry (503), refused (4xx)',
      labelNames: ['kind', 'result'],
      registers,
    });
    this.#records = new Counter({
      name: 'ferry_gateway_http_records_total',
      help: 'records acknowledged by Kafka that arrived over HTTP (duplicates not counted)',
      labelNames: ['kind'],
      registers,
    });
    this.#bytes = new Counter({
      name: 'ferry_gateway_http_received_bytes_total',
      help: 'request body bytes received for chunks and produce batches, after Content-Encoding was undone',
      labelNames: ['kind'],
      registers,
    });
    this.#heartbeats = new Counter({
      name: 'ferry_gateway_http_heartbeats_total',
      help: 'agent heartbeats received over HTTP',
      registers,
    });
    this.#duration = new Histogram({
      name: 'ferry_gateway_http_request_duration_seconds',
      help: 'time from request to answer, by route',
      labelNames: ['route'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers,
    });
  }

  response(route: string, status: number, seconds: number): void {
    this.#requests.inc({ route, status: String(status) });
    this.#duration.observe({ route }, seconds);
  }

  received(kind: 'chunk' | 'produce', bytes: number): void {
    this.#bytes.inc({ kind }, bytes);
  }

  accepted(kind: 'chunk' | 'produce', fields: Record<string, unknown>, records: number, duplicate: boolean): void {
    this.#chunks.inc({ kind, result: duplicate ? 'duplicate' : 'ok' });
    if (!duplicate) this.#records.inc({ kind }, records);
    this.log.debug({ ...fields, kind, records, duplicate }, duplicate ? 'duplicate acknowledged without producing' : 'produced to Kafka');
  }

  retry(kind: 'chunk' | 'produce', fields: Record<string, unknown>, reason: string): void {
    this.#chunks.inc({ kind, result: 'retry' });
    this.log.warn({ ...fields, kind, reason }, 'Kafka unavailable: asked the sender to retry (503)');
  }

  refused(kind: 'chunk' | 'produce', fields: Record<string, unknown>, status: number, code: string, reason: string): void {
    this.#chunks.inc({ kind, result: 'refused' });
    this.log.warn({ ...fields, kind, status, code, reason }, 'refused');
  }

  heartbeat(): void {
    this.#heartbeats.inc();
  }
}
