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

/** The counter `name` in `registry`, made there the first time (components built again on one registry, as in tests, share it). */
export function counterIn(registry: Registry, name: string, help: string): Counter {
  return (registry.getSingleMetric(name) as Counter | undefined) ?? new Counter({ name, help, registers: [registry] });
}

/** The gauge `name` in `registry`, made there the first time (see counterIn). */
export function gaugeIn(registry: Registry, name: string, help: string): Gauge {
  return (registry.getSingleMetric(name) as Gauge | undefined) ?? new Gauge({ name, help, registers: [registry] });
}
