import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifyError, errorLabel } from '../../../../gateway/sinks/kafka/classify.js';
import { codeNames, kafkaType, toKafkaError, LibrdkafkaError } from '../../../../gateway/sinks/kafka/librdkafka/errors.js';
import { KafkaError } from '../../../../shared/errors.js';
import type { NativeError } from '../../../../gateway/sinks/kafka/librdkafka/native.js';

// A slice of librdkafka's own table (CODES.ERRORS), as the library gives it.
const names = codeNames({
  ERR__BEGIN: -200,
  ERR__MSG_TIMED_OUT: -192,
  ERR__UNKNOWN_PARTITION: -190,
  ERR__UNKNOWN_TOPIC: -188,
  ERR__FATAL: -150,
  ERR__FENCED: -144,
  ERR_UNKNOWN_TOPIC_OR_PART: 3,
  ERR_MSG_SIZE_TOO_LARGE: 10,
  ERR_TOPIC_EXCEPTION: 17,
  ERR_RECORD_LIST_TOO_LARGE: 18,
  ERR_NOT_ENOUGH_REPLICAS: 19,
  ERR_TOPIC_AUTHORIZATION_FAILED: 29,
  ERR_INVALID_TIMESTAMP: 32,
  ERR_INVALID_PRODUCER_EPOCH: 47,
  ERR_INVALID_RECORD: 87,
  ERR_PRODUCER_FENCED: 90,
});

function native(code: number, message = 'librdkafka says no', extra: { isFatal?: boolean } = {}): NativeError {
  return Object.assign(new Error(message), { code, ...extra });
}

describe('librdkafka errors -> Kafka protocol error types', () => {
  it('names broker errors like kafkajs does, so classify.ts sorts them the same way', () => {
    const cases: Array<[number, string, ReturnType<typeof classifyError>, boolean]> = [
      [3, 'UNKNOWN_TOPIC_OR_PARTITION', 'topic', false],
      [29, 'TOPIC_AUTHORIZATION_FAILED', 'topic', false],
      [10, 'MESSAGE_TOO_LARGE', 'too-large', false],
      [18, 'RECORD_LIST_TOO_LARGE', 'too-large', false],
      [32, 'INVALID_TIMESTAMP', 'refused', false],
      [87, 'INVALID_RECORD', 'refused', false],
      [17, 'INVALID_TOPIC_EXCEPTION', 'refused', false],
      [90, 'PRODUCER_FENCED', 'fenced', false],
      [47, 'INVALID_PRODUCER_EPOCH', 'fenced', false],
      [19, 'NOT_ENOUGH_REPLICAS', 'retry', true],
    ];
    for (const [code, type, cls, retriable] of cases) {
      const cause = native(code);
      const e = toKafkaError(cause, 'produce', { names });
      assert.ok(e instanceof LibrdkafkaError && e instanceof KafkaError);
      assert.equal((e).type, type);
      assert.equal(e.cause, cause, 'cause is the library error');
      assert.equal(e.retriable, retriable, type);
      assert.equal(classifyError(e), cls, type);
      assert.equal(errorLabel(e), type);
    }
  });

  it('maps the local errors that mean a protocol condition, and keeps librdkafka names for the transient rest', () => {
    assert.equal(kafkaType(-144, names), 'PRODUCER_FENCED');
    assert.equal(kafkaType(-188, names), 'UNKNOWN_TOPIC_OR_PARTITION');
    assert.equal(kafkaType(-190, names), 'UNKNOWN_TOPIC_OR_PARTITION');
    assert.equal(kafkaType(-192, names), 'ERR__MSG_TIMED_OUT');
    assert.equal(kafkaType(12345, names), 'LIBRDKAFKA_12345');
    const timedOut = toKafkaError(native(-192), 'produce', { names });
    assert.equal(classifyError(timedOut), 'retry');
    assert.equal(timedOut.retriable, true);
  });

  it('gives ERR__FATAL the type of the fatal error a call returned before', () => {
    const fatal = native(-144, 'fenced by a newer instance', { isFatal: true });
    const e = toKafkaError(native(-150, 'fatal error'), 'commit', { names, fatal });
    assert.equal((e as LibrdkafkaError).type, 'PRODUCER_FENCED');
    assert.equal(classifyError(e), 'fenced');
    assert.match(e.message, /fenced by a newer instance/);
    assert.equal(classifyError(toKafkaError(native(-150), 'commit', { names })), 'retry');
  });

  it('wraps errors without a code as retriable, and passes KafkaErrors through', () => {
    const plain = toKafkaError(new Error('socket hang up'), 'connect', { names });
    assert.equal(plain.retriable, true);
    assert.equal(classifyError(plain), 'retry');
    const k = new KafkaError('ours', false);
    assert.equal(toKafkaError(k, 'x', { names }), k);
  });
});
