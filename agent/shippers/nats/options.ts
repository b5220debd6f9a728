/**
 * Turns `transport.nats` into nats.js connection options: servers, name, credentials (user/pass,
 * token, nkey seed file, creds file) and TLS files. Files are read here, once, so a missing or
 * unreadable one fails the start with a message naming the key.
 */
import { readFileSync } from 'node:fs';
import { credsAuthenticator, nkeyAuthenticator, type Authenticator, type NodeConnectionOptions } from '@nats-io/transport-node';
import { TransportError, errorMessage } from '../../../shared/errors.js';
import type { AgentConfig } from '../../config.js';

export type NatsTransportConfig = NonNullable<AgentConfig['transport']['nats']>;

function readKeyFile(key: string, file: string): Uint8Array {
  try {
    const data = readFileSync(file);
    if (data.length === 0) throw new Error('the file is empty');
    return new Uint8Array(data);
  } catch (err) {
    throw new TransportError(`transport.nats.${key}: cannot read ${file}: ${errorMessage(err)}`, { cause: err });
  }
}

export function natsConnectionOptions(cfg: NatsTransportConfig, agentId: string): NodeConnectionOptions {
  const opts: NodeConnectionOptions = {
    servers: [...cfg.servers],
    name: cfg.name ?? `ferry-agent/${agentId}`,
    // Reconnect forever; the shipper logs every change of state.
    reconnect: true,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 1000,
    reconnectJitter: 500,
    timeout: 10_000,
    pingInterval: 30_000,
    maxPingOut: 3,
  };
  const authenticators: Authenticator[] = [];
  if (cfg.user !== undefined) {
    opts.user = cfg.user;
    if (cfg.pass !== undefined) opts.pass = cfg.pass;
  }
  if (cfg.token !== undefined) opts.token = cfg.token;
  if (cfg.nkeySeedFile !== undefined) {
    const seed = new TextDecoder().decode(readKeyFile('nkeySeedFile', cfg.nkeySeedFile)).trim();
    if (!seed.startsWith('SU')) throw new TransportError(`transport.nats.nkeySeedFile: ${cfg.nkeySeedFile} does not hold a user nkey seed (it should start with "SU")`);
    authenticators.push(nkeyAuthenticator(new TextEncoder().encode(seed)));
  }
  if (cfg.credsFile !== undefined) authenticators.push(credsAuthenticator(readKeyFile('credsFile', cfg.credsFile)));
  if (authenticators.length > 0) opts.authenticator = authenticators;
  if (cfg.tls) {
    for (const k of ['caFile', 'certFile', 'keyFile'] as const) {
      const f = cfg.tls[k];
      if (f !== undefined) readKeyFile(`tls.${k}`, f);
    }
    if ((cfg.tls.certFile === undefined) !== (cfg.tls.keyFile === undefined)) {
      throw new TransportError('transport.nats.tls: certFile and keyFile go together (client certificate for mTLS)');
    }
    opts.tls = {
      ...(cfg.tls.caFile !== undefined ? { caFile: cfg.tls.caFile } : {}),
      ...(cfg.tls.certFile !== undefined ? { certFile: cfg.tls.certFile } : {}),
      ...(cfg.tls.keyFile !== undefined ? { keyFile: cfg.tls.keyFile } : {}),
    };
  }
  return opts;
}
