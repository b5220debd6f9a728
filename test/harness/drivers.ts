// The Kafka drivers every Kafka-facing integration and e2e test runs against: exactly the options
// of `kafka.driver` in the gateway's config schema, so a driver added to that enum joins the
// matrix by itself, and none can be left out by a list kept here or an environment switch.
//   for (const driver of KAFKA_DRIVERS) {
//     describe(`... (driver: ${driver})`, () => { ... withDriver({ brokers }, driver) ... });
//   }
// In a YAML config, kafkaDriverYaml(driver) is the line to put under `kafka:`.
import { gatewayConfigSchema, type GatewayConfig } from '../../gateway/config.js';

export type KafkaDriverName = GatewayConfig['kafka']['driver'];

export const KAFKA_DRIVERS: readonly KafkaDriverName[] = Object.freeze([...gatewayConfigSchema.shape.kafka.shape.driver.unwrap().options]);

/** A `kafka` config section (object form) with `driver` set. */
export function withDriver<T extends object>(kafka: T, driver: KafkaDriverName): T & { driver: KafkaDriverName } {
  return { ...kafka, driver };
}

/** The `driver:` line of a YAML gateway config, indented to sit under `kafka:`. */
export function kafkaDriverYaml(driver: KafkaDriverName): string {
  return `  driver: ${driver}`;
}
