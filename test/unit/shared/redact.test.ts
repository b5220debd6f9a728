import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { redactText, redactUrl, redactUrls } from '../../../shared/redact.js';

describe('redactUrl', () => {
  it('hides the user and password of a server URL and keeps where it points', () => {
    assert.equal(redactUrl('nats://alice:s3cret@dmz-nats:4222'), 'nats://***@dmz-nats:4222');
    assert.equal(redactUrl('https://token@gw.example:8443/v1'), 'https://***@gw.example:8443/v1');
  });

  it('leaves URLs without credentials and other strings unchanged', () => {
    assert.equal(redactUrl('nats://dmz-nats:4222'), 'nats://dmz-nats:4222');
    assert.equal(redactUrl('127.0.0.1:4222'), '127.0.0.1:4222');
    assert.equal(redactUrl('http://gw/path?q=a@b'), 'http://gw/path?q=a@b');
  });

  it('redacts each entry of a list', () => {
    assert.deepEqual(redactUrls(['nats://u:p@a:1', 'nats://b:2']), ['nats://***@a:1', 'nats://b:2']);
  });

  it('redacts every URL inside a text', () => {
    assert.equal(redactText('cannot connect to nats://u:p@a:1 or tls://x:y@b:2'), 'cannot connect to nats://***@a:1 or tls://***@b:2');
    const secret = 'p@ss';
    assert.equal(redactUrl(`nats://user:${secret}@host:4222`), 'nats://***@host:4222');
    assert.equal(redactText(`at nats://user:${secret}@host:4222 now`), 'at nats://***@host:4222 now');
  });
});
