/**
 * TLS and token options shared by the fuzz and load scripts: the server they start gets
 * --tls-cert/--tls-key and --auth-file, and their clients verify with --tls-ca and send --token.
 *
 *   npm run load -- --tls-cert server.crt --tls-key server.key --tls-ca ca.crt --auth-file auth.json --token "$T"
 */
import { readFileSync } from 'node:fs';
import type { SecureClientSessionOptions } from 'node:http2';
import { type ChannelCredentials, credentials, Metadata } from '@grpc/grpc-js';

/** parseArgs options for the shared flags. */
export const CONNECTION_ARGS = {
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'tls-ca': { type: 'string' },
  'auth-file': { type: 'string' },
  token: { type: 'string' },
} as const;

export interface ConnectionFlags {
  'tls-cert'?: string;
  'tls-key'?: string;
  'tls-ca'?: string;
  'auth-file'?: string;
  token?: string;
}

/** How a script's clients reach its server (plaintext without a token by default). */
export interface Connection {
  /** Extra `buffdb run` flags for the server the script starts. */
  serverArgs: string[];
  credentials: ChannelCredentials;
  /** Fresh call metadata (with the token, if any). */
  metadata(): Metadata;
  /** For raw HTTP/2 clients. */
  h2Url(addr: string): string;
  h2Options: SecureClientSessionOptions;
  h2Headers: Record<string, string>;
}

export const PLAIN: Connection = connection({});

export function connection(flags: ConnectionFlags): Connection {
  const tls = flags['tls-cert'] !== undefined;
  if (tls && (flags['tls-key'] === undefined || flags['tls-ca'] === undefined)) {
    throw new Error('--tls-cert needs --tls-key (for the server) and --tls-ca (for the clients)');
  }
  if ((flags['auth-file'] === undefined) !== (flags.token === undefined)) {
    throw new Error('--auth-file (for the server) and --token (for the clients) go together');
  }
  const ca = tls ? readFileSync(flags['tls-ca']!) : undefined;
  // TLS to 127.0.0.1: the certificate is checked against the IP; Node's warning about it is noise here.
  if (tls) process.noDeprecation = true;
  const token = flags.token;
  return {
    serverArgs: [
      ...(tls ? ['--tls-cert', flags['tls-cert']!, '--tls-key', flags['tls-key']!] : []),
      ...(flags['auth-file'] ? ['--auth-file', flags['auth-file']] : []),
    ],
    credentials: ca ? credentials.createSsl(ca) : credentials.createInsecure(),
    metadata: () => {
      const md = new Metadata();
      if (token) md.set('authorization', `Bearer ${token}`);
      return md;
    },
    h2Url: (addr) => `${tls ? 'https' : 'http'}://${addr}`,
    h2Options: ca ? { ca } : {},
    h2Headers: token ? { authorization: `Bearer ${token}` } : {},
  };
}
