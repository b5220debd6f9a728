// The test matrix's driver list (test/harness/drivers.ts) against the gateway's config schema.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { gatewayConfigSchema } from '../../../gateway/config.js';
import { KAFKA_DRIVERS, kafkaDriverYaml, withDriver } from '../../harness/drivers.js';

const parseKafka = (kafka: Record<string, unknown>) => gatewayConfigSchema.safeParse({ kafka, http: { allowAnonymous: true } });

describe('the Kafka driver matrix of the tests', () => {
  it('holds every driver kafka.driver accepts, kafkajs among them, each once', () => {
    assert.ok(KAFKA_DRIVERS.includes('kafkajs'));
    assert.equal(new Set(KAFKA_DRIVERS).size, KAFKA_DRIVERS.length);
    for (const driver of KAFKA_DRIVERS) {
      const parsed = parseKafka(withDriver({ brokers: ['127.0.0.1:9092'] }, driver));
      assert.equal(parsed.success && parsed.data.kafka.driver, driver);
    }
    // The list is the schema's own: a name the schema refuses is not a driver.
    assert.equal(parseKafka({ brokers: ['127.0.0.1:9092'], driver: 'no-such-driver' }).success, false);
  });

  it('puts the driver into a YAML config under kafka:', () => {
    for (const driver of KAFKA_DRIVERS) {
      const doc: unknown = parse(['kafka:', '  brokers: ["127.0.0.1:9092"]', kafkaDriverYaml(driver), 'http:', '  allowAnonymous: true', ''].join('\n'));
      const parsed = gatewayConfigSchema.safeParse(doc);
      assert.equal(parsed.success && parsed.data.kafka.driver, driver);
    }
  });
});
