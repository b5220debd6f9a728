// The test harness: real servers on free ports with their own temp data, and bounded waits.
//   await using nats = await startNats();      // JetStream on; restart(), kill(), stop()
//   const kafka = await startKafka();          // in before(); kafka.destroy() in after()
//   await kafka.createTopic('t'); const records = await kafka.readAll('t', { expect: 10 });
//   await waitFor(() => cond(), 5000, 'the thing');
//   for (const driver of KAFKA_DRIVERS) describe(`... (driver: ${driver})`, ...);  // drivers.ts
// Servers come from $FERRY_NATS_SERVER / $FERRY_KAFKA_LIBS, else $FERRY_CACHE (~/.cache/ferry,
// filled by `npm run servers:install`). Children are killed when the test process exits.
export { startNats, type NatsServer, type NatsServerOptions } from './nats.js';
export {
  startKafka,
  type KafkaBroker,
  type KafkaOptions,
  type KafkaRecordOut,
  type ReadAllOptions,
  type CreateTopicOptions,
} from './kafka.js';
export { KAFKA_DRIVERS, withDriver, kafkaDriverYaml, type KafkaDriverName } from './drivers.js';
export { waitFor, httpOk, type WaitForOptions } from './wait.js';
export { tempDir, type TempDir } from './temp.js';
export { freePort } from './process.js';
export { findNatsServer, findKafkaLibs, findJava, ferryCache, NATS_SERVER_VERSION, KAFKA_VERSION } from './locate.js';
export { ServerNotInstalledError, ServerStartError, ServerOperationError, WaitTimeoutError } from './errors.js';
