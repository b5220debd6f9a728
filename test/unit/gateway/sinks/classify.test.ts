import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { classifyError, errorLabel } from '../../../../gateway/sinks/kafka/classify.js';

function protocolError(type: string): Error {
  return Object.assign(new Error(type), { name: 'KafkaJSProtocolError', type });
}

describe('classifyError', () => {
  it('calls connection errors and unknown errors retry', () => {
    assert.equal(classifyError(Object.assign(new Error('Connection error'), { name: 'KafkaJSConnectionError' })), 'retry');
    assert.equal(classifyError(new Error('whatever')), 'retry');
    assert.equal(classifyError(protocolError('NOT_ENOUGH_REPLICAS')), 'retry');
    assert.equal(classifyError('a string'), 'retry');
  });

  it('finds the protocol error type through kafkajs wrappers', () => {
    const wrapped = Object.assign(new Error('retries exceeded'), { name: 'KafkaJSNumberOfRetriesExceeded', cause: protocolError('MESSAGE_TOO_LARGE') });
    assert.equal(classifyError(wrapped), 'too-large');
    const agg = Object.assign(new Error('agg'), { errors: [new Error('x'), protocolError('TOPIC_AUTHORIZATION_FAILED')] });
    assert.equal(classifyError(agg), 'topic');
    assert.equal(errorLabel(agg), 'TOPIC_AUTHORIZATION_FAILED');
  });

  it('recognises a fenced producer before anything else', () => {
    const e = Object.assign(protocolError('UNKNOWN_TOPIC_OR_PARTITION'), { cause: protocolError('PRODUCER_FENCED') });
    assert.equal(classifyError(e), 'fenced');
  });

  it('does not loop on a cyclic cause chain', () => {
    const a: Error & { cause?: unknown } = new Error('a');
    const b: Error & { cause?: unknown } = new Error('b');
    a.cause = b;
    b.cause = a;
    assert.equal(classifyError(a), 'retry');
  });
});
