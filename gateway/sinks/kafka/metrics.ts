/**
 * The Kafka sink's telemetry: ferry_gateway_kafka_* counters (chunks by outcome, records, bytes
 * per topic, duplicates, errors by type, transactions, clamped timestamps), the produce-latency
 * and records-per-flush histograms, the committed-id gauge. Registered once per registry (a
 * second sink on the same registry shares them).
 */
import type { Registry } from 'prom-client';
import { Counter, Gauge, Histogram } from '../../../shared/metrics.js';

function metric<T>(registry: Registry, name: string, make: () => T): T {
  return (registry.getSingleMetric(name) as T | undefined) ?? make();
}

export class SinkMetrics {
  readonly chunks: Counter<'topic' | 'outcome'>;
  readonly records: Counter<'topic'>;
  readonly bytes: Counter<'topic'>;
  readonly duplicates: Counter;
  readonly errors: Counter<'type'>;
  readonly transactions: Counter<'result'>;
  readonly produceSeconds: Histogram;
  readonly flushRecords: Histogram;
  readonly committedIds: Gauge;
  readonly clamped: Counter<'direction'>;

  constructor(r: Registry) {
    const registers = [r];
    this.chunks = metric(r, 'ferry_gateway_kafka_chunks_total', () => new Counter({ name: 'ferry_gateway_kafka_chunks_total', help: 'chunks handled by the Kafka sink, by topic and outcome (ok, duplicate, retry, fatal)', labelNames: ['topic', 'outcome'], registers }));
    this.records = metric(r, 'ferry_gateway_kafka_records_total', () => new Counter({ name: 'ferry_gateway_kafka_records_total', help: 'records acknowledged by Kafka, by topic', labelNames: ['topic'], registers }));
    this.bytes = metric(r, 'ferry_gateway_kafka_bytes_total', () => new Counter({ name: 'ferry_gateway_kafka_bytes_total', help: 'record value bytes acknowledged by Kafka, by topic', labelNames: ['topic'], registers }));
    this.duplicates = metric(r, 'ferry_gateway_kafka_duplicate_chunks_total', () => new Counter({ name: 'ferry_gateway_kafka_duplicate_chunks_total', help: 'chunks recognised as already committed and not produced again', registers }));
    this.errors = metric(r, 'ferry_gateway_kafka_errors_total', () => new Counter({ name: 'ferry_gateway_kafka_errors_total', help: 'failed flushes, by error type', labelNames: ['type'], registers }));
    this.transactions = metric(r, 'ferry_gateway_kafka_transactions_total', () => new Counter({ name: 'ferry_gateway_kafka_transactions_total', help: 'exactly-once transactions, by result (committed, aborted)', labelNames: ['result'], registers }));
    this.produceSeconds = metric(r, 'ferry_gateway_kafka_produce_seconds', () => new Histogram({ name: 'ferry_gateway_kafka_produce_seconds', help: 'time to produce one flush (all its requests, and the commit)', buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers }));
    this.flushRecords = metric(r, 'ferry_gateway_kafka_flush_records', () => new Histogram({ name: 'ferry_gateway_kafka_flush_records', help: 'records per flush', buckets: [10, 100, 1000, 5000, 10000, 25000, 50000, 100000], registers }));
    this.clamped = metric(r, 'ferry_gateway_kafka_timestamps_clamped_total', () => new Counter({ name: 'ferry_gateway_kafka_timestamps_clamped_total', help: "chunks whose read time was too far ahead (future) or behind (past) the gateway's clock, produced with the gateway's now", labelNames: ['direction'], registers }));
    this.committedIds = metric(r, 'ferry_gateway_kafka_committed_ids', () => new Gauge({ name: 'ferry_gateway_kafka_committed_ids', help: 'committed chunk ids known (exactly-once)', registers }));
  }
}

