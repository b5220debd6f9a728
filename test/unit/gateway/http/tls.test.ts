import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { silentLogger } from '../../../../shared/log.js';
import { createRegistry } from '../../../../shared/metrics.js';
import { HttpInput } from '../../../../gateway/inputs/http/input.js';
import { tempDir, type TempDir } from '../../../harness/temp.js';
import { FakeSink, heartbeat, httpConfig, newAgents } from './fixtures.js';

/** A self-signed certificate for 127.0.0.1 (it is its own CA). */
function selfSigned(dir: string, name: string): { cert: string; key: string } {
  const cert = join(dir, `${name}.crt`);
  const key = join(dir, `${name}.key`);
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'pipe' });
  return { cert, key };
}

function postHeartbeat(address: string, tls: { ca: Buffer; cert?: Buffer; key?: Buffer }): Promise<number> {
  const [host, port] = address.split(':');
  const body = JSON.stringify(heartbeat());
  return new Promise((resolve, reject) => {
    const req = request(
      { host, port: Number(port), method: 'POST', path: '/v1/heartbeats', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, ...tls },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

describe('HTTP input over TLS (http.tls)', () => {
  let dir: TempDir;
  let server: { cert: string; key: string };
  let client: { cert: string; key: string };

  before(() => {
    dir = tempDir('http-tls');
    server = selfSigned(dir.path, 'server');
    client = selfSigned(dir.path, 'client');
  });

  after(async () => {
    await dir.cleanup();
  });

  function input(tls: Record<string, string>): HttpInput {
    const registry = createRegistry({ defaultMetrics: false });
    return new HttpInput({ config: httpConfig({ listen: '127.0.0.1:0', tls }), sink: new FakeSink(), agents: newAgents(registry), log: silentLogger(), registry });
  }

  it('serves HTTPS with certFile/keyFile', async () => {
    const http = input({ certFile: server.cert, keyFile: server.key });
    const address = await http.start();
    try {
      assert.equal(await postHeartbeat(address, { ca: readFileSync(server.cert) }), 204);
    } finally {
      await http.stop(Date.now() + 2000);
    }
  });

  it('requires a client certificate signed by caFile (mTLS) when caFile is set', async () => {
    const http = input({ certFile: server.cert, keyFile: server.key, caFile: client.cert });
    const address = await http.start();
    try {
      const ca = readFileSync(server.cert);
      assert.equal(await postHeartbeat(address, { ca, cert: readFileSync(client.cert), key: readFileSync(client.key) }), 204);
      await assert.rejects(postHeartbeat(address, { ca }), (err: NodeJS.ErrnoException) => {
        assert.ok(err.code === 'ECONNRESET' || /certificate|handshake|alert/i.test(err.message), err.message);
        return true;
      });
    } finally {
      await http.stop(Date.now() + 2000);
    }
  });
});
