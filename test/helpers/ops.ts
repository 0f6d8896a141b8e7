/** Test helpers for the operations features: a health client, buf curl, certificates made with openssl. */
import { execFile, execFileSync, spawn, spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  type ChannelCredentials,
  type Client,
  credentials,
  makeClientConstructor,
  type ServiceError,
} from '@grpc/grpc-js';
import { service as healthService } from 'grpc-health-check';
import { CLI, ROOT } from './server.js';

export const BUF = join(ROOT, 'node_modules', '.bin', 'buf');

type HealthClient = Client & {
  check(req: { service: string }, cb: (err: ServiceError | null, res?: { status: string }) => void): void;
  watch(req: { service: string }): NodeJS.EventEmitter & { cancel(): void };
};

export function healthClient(addr: string, creds: ChannelCredentials = credentials.createInsecure()): HealthClient {
  const Ctor = makeClientConstructor(healthService as never, 'Health');
  return new Ctor(addr, creds) as unknown as HealthClient;
}

export function checkHealth(client: HealthClient, service = ''): Promise<{ status?: string; err?: ServiceError }> {
  return new Promise((resolve) =>
    client.check({ service }, (err, res) => resolve(err ? { err } : { status: res!.status })),
  );
}

export interface BufResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** `buf curl ARGS` against a server: a real, independent gRPC client using reflection. */
export function bufCurl(args: string[]): Promise<BufResult> {
  return new Promise((resolve) => {
    execFile(BUF, ['curl', '--protocol', 'grpc', ...args], { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number) : 0;
      resolve({ code: typeof code === 'number' ? code : 1, stdout, stderr });
    });
  });
}

export interface Pki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
  /** A second client, signed by a CA the server does not trust. */
  rogueCert: string;
  rogueKey: string;
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

/** A CA, a server certificate for localhost/127.0.0.1, and a client certificate, made with openssl. */
export function makePki(dir: string, serverName = 'server'): Pki {
  const ext = join(dir, 'san.ext');
  writeFileSync(ext, 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n');
  const newKey = (name: string) => [
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    `${name}.key`,
  ];
  const ca = (name: string) =>
    openssl(dir, ['req', '-x509', ...newKey(name), '-out', `${name}.crt`, '-days', '2', '-subj', `/CN=${name}`]);
  const leaf = (name: string, signer: string, subject: string, extFile?: string) => {
    openssl(dir, ['req', ...newKey(name), '-out', `${name}.csr`, '-subj', subject]);
    const signWith = ['-CA', `${signer}.crt`, '-CAkey', `${signer}.key`, '-CAcreateserial'];
    openssl(dir, [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      ...signWith,
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      ...(extFile ? ['-extfile', extFile] : []),
    ]);
  };
  ca('ca');
  ca('rogue-ca');
  leaf(serverName, 'ca', `/CN=${serverName}`, ext);
  leaf('client', 'ca', '/CN=client-1/O=buffdb tests');
  leaf('rogue', 'rogue-ca', '/CN=client-1/O=buffdb tests');
  const p = (f: string) => join(dir, f);
  return {
    dir,
    caCert: p('ca.crt'),
    serverCert: p(`${serverName}.crt`),
    serverKey: p(`${serverName}.key`),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
    rogueCert: p('rogue.crt'),
    rogueKey: p('rogue.key'),
  };
}

export interface CliResult {
  status: number | null;
  out: string;
  stderr: string;
}

/** Runs the built CLI and waits (blocks the event loop: never against a server in this process). */
export function cliSync(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}, input?: string): CliResult {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    env: { ...process.env, ...env },
    input,
    timeout: 120_000,
  });
  return { status: r.status, out: r.stdout.toString(), stderr: r.stderr.toString() };
}

/** Runs the built CLI without blocking: for commands that talk to a server living in this process. */
export function cliAsync(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return nodeAsync(cwd, [CLI, ...args], env);
}

/** Runs `node ARGS` without blocking; resolves with its exit status and output. */
export function nodeAsync(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, {
      cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('close', (status) => resolve({ status, out, stderr }));
  });
}
