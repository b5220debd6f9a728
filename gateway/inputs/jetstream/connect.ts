/**
 * NATS connection options from the gateway's `nats` config (servers, user/pass, token, creds or
 * nkey seed file, TLS): one place for the JetStream input and the dead-letters command.
 * Reading a creds or seed file can throw (missing file); callers report it with the key.
 */
import { readFileSync } from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator, type NodeConnectionOptions } from '@nats-io/transport-node';
import type { JetStreamConfig } from './setup.js';

export function natsConnectOptions(c: JetStreamConfig): NodeConnectionOptions {
  const o: NodeConnectionOptions = {
    servers: [...c.servers],
    name: 'ferry-gateway',
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    timeout: 10_000,
  };
  if (c.user !== undefined) o.user = c.user;
  if (c.pass !== undefined) o.pass = c.pass;
  if (c.token !== undefined) o.token = c.token;
  if (c.credsFile) o.authenticator = credsAuthenticator(readFileSync(c.credsFile));
  else if (c.nkeySeedFile) o.authenticator = nkeyAuthenticator(new TextEncoder().encode(readFileSync(c.nkeySeedFile, 'utf8').trim()));
  if (c.tls) {
    o.tls = {
      ...(c.tls.caFile ? { caFile: c.tls.caFile } : {}),
      ...(c.tls.certFile ? { certFile: c.tls.certFile } : {}),
      ...(c.tls.keyFile ? { keyFile: c.tls.keyFile } : {}),
    };
  }
  return o;
}
