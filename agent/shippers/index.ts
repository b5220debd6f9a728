/** The shippers' entry point: the contract, the pump, and the shipper for a configured transport. */
import type { Logger } from '../../shared/log.js';
import type { Registry } from '../../shared/metrics.js';
import type { AgentConfig } from '../config.js';
import { HttpShipper } from './http/shipper.js';
import { NatsShipper } from './nats/shipper.js';
import type { Shipper } from './types.js';

export { Pump, type PumpOptions, type PumpStatus } from './pump.js';
export { NatsShipper } from './nats/shipper.js';
export { HttpShipper } from './http/shipper.js';
export * from './types.js';

/** The shipper for `config.transport` (exactly one of nats / http is set; the schema checks it). */
export function createShipper(config: AgentConfig, deps: { log: Logger; registry: Registry; onMaxChunkBytes?: (maxChunkBytes: number) => void }): Shipper {
  const { onMaxChunkBytes, ...common } = deps;
  if (config.transport.nats) return new NatsShipper({ config: config.transport.nats, agentId: config.id, ...common, ...(onMaxChunkBytes ? { onMaxChunkBytes } : {}) });
  // HTTP's limit is configured (transport.http.maxChunkBytes): nothing to learn.
  if (config.transport.http) return new HttpShipper({ config: config.transport.http, agentId: config.id, ...common });
  throw new Error('transport: neither nats nor http is configured');
}

/** transport.<kind>.maxInFlight */
export function maxInFlightOf(config: AgentConfig): number {
  return config.transport.nats?.maxInFlight ?? config.transport.http?.maxInFlight ?? 1;
}
