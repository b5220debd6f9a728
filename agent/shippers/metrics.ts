/** Transport metrics shared by the shippers (one shipper per process; get-or-create keeps tests that share a registry working). */
import { counterIn as counter, gaugeIn as gauge, type Counter, type Gauge, type Registry } from '../../shared/metrics.js';

export interface TransportMetrics {
  connected: Gauge;
  disconnects: Counter;
  reconnects: Counter;
}

export function transportMetrics(registry: Registry): TransportMetrics {
  return {
    connected: gauge(registry, 'ferry_transport_connected', '1 while the transport (NATS connection, or HTTP gateway reachable) is up'),
    disconnects: counter(registry, 'ferry_transport_disconnects_total', 'times the transport went from connected to disconnected'),
    reconnects: counter(registry, 'ferry_transport_reconnects_total', 'times the transport came back after a disconnection'),
  };
}
