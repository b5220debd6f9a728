/**
 * `kafka.driver` -> the driver behind the Kafka sink (driver.ts). A driver whose library is
 * native is loaded only when chosen, so a gateway without it installed still runs the others.
 */
import type { DriverContext, KafkaDriver } from './driver.js';
import { KafkajsDriver } from './kafkajs/driver.js';

export async function createDriver(ctx: DriverContext): Promise<KafkaDriver> {
  switch (ctx.config.driver) {
    case 'kafkajs':
      return new KafkajsDriver(ctx);
    case 'librdkafka': {
      const { createLibrdkafkaDriver } = await import('./librdkafka/driver.js');
      return createLibrdkafkaDriver(ctx);
    }
  }
}
