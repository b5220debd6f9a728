/**
 * Prometheus metrics: one registry per process (not prom-client's global one, so tests can
 * build several components side by side). Names follow `ferry_<noun>_<unit>_total`.
 */
import { Registry, Counter, Gauge, Histogram, collectDefaultMetrics } from 'prom-client';

export { Registry, Counter, Gauge, Histogram };

export function createRegistry(opts: { defaultMetrics?: boolean; labels?: Record<string, string> } = {}): Registry {
  const registry = new Registry();
  if (opts.labels) registry.setDefaultLabels(opts.labels);
  if (opts.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'ferry_process_' });
  return registry;
}
