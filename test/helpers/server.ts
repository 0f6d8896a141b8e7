/** Test fixtures: a real buffdb server on a loopback port over real files in a temp directory. */

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { ClientDuplexStream, ClientWritableStream, ServiceError } from '@grpc/grpc-js';
import { BACKEND_NAMES, type BackendName, capabilitiesOf } from '../../src/backends/index.js';
import { type BuffDbClients, connect } from '../../src/client/network.js';
import { type RunningServer, startServer } from '../../src/server/server.js';
import { BuffDb, type BuffDbOptions } from '../../src/store/buffdb.js';
import { storeLocator } from './postgres.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');
/** The built executable (npm test builds first), run as users run it. */
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');

/** Backends the backend-parameterised suites run against. */
export const TEST_BACKENDS: string[] = (process.env.BUFFDB_TEST_BACKENDS ?? BACKEND_NAMES.join(','))
  .split(',')
  .filter(Boolean);

export function tempDir(prefix = 'buffdb-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export interface TestServer {
  addr: string;
  dir: string;
  db: BuffDb;
  running: RunningServer;
  clients: BuffDbClients;
  /** Shuts the server down (committing everything) and closes the clients. */
  stop(): Promise<void>;
  /** stop() and remove the directory. */
  dispose(): Promise<void>;
}

export async function startTestServer(options: BuffDbOptions & { dir?: string } = {}): Promise<TestServer> {
  const dir = options.dir ?? tempDir();
  // Stores that are URLs (postgres) get a fresh schema each, dropped by dispose().
  const urls =
    typeof options.backend === 'string' && capabilitiesOf(options.backend as BackendName).storeLocation === 'url';
  const stores = urls ? await storeLocator(options.backend as string) : undefined;
  const db = await BuffDb.open({
    ...(stores ? stores.locate('srv') : { kvStore: join(dir, 'kv_store.db'), blobStore: join(dir, 'blob_store.db') }),
    ...options,
  });
  const running = await startServer(db, { addr: '127.0.0.1:0' });
  const clients = connect(running.addr);
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    clients.close();
    await running.shutdown(2000);
  };
  return {
    addr: running.addr,
    dir,
    db,
    running,
    clients,
    stop,
    dispose: async () => {
      await stop();
      await stores?.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface StreamResult<Res> {
  out: Res[];
  err?: ServiceError;
}

/** Writes every request, half-closes, and collects the answers and the final status. */
export function bidi<Req, Res>(call: ClientDuplexStream<Req, Res>, requests: Req[]): Promise<StreamResult<Res>> {
  return new Promise((resolvePromise) => {
    const out: Res[] = [];
    call.on('data', (d: Res) => out.push(d));
    call.on('error', (err: ServiceError) => resolvePromise({ out, err }));
    call.on('end', () => resolvePromise({ out }));
    for (const r of requests) call.write(r);
    call.end();
  });
}

/** For client-streaming calls with one answer (Eq, NotEq, EqData, NotEqData). */
export function fold<Req>(
  start: (cb: (err: ServiceError | null, value?: boolean) => void) => ClientWritableStream<Req>,
  requests: Req[],
): Promise<{ value?: boolean; err?: ServiceError }> {
  return new Promise((resolvePromise) => {
    const call = start((err, value) => resolvePromise(err ? { err } : { value }));
    call.on('error', () => {});
    for (const r of requests) call.write(r);
    call.end();
  });
}

export interface ServerProcess {
  child: ChildProcess;
  addr: string;
  stderr: () => string;
  /** Resolves with the exit code (or signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Starts `buffdb run ARGS` as a child process (give it an address such as 127.0.0.1:0) and waits until it listens. */
export function spawnServer(
  args: string[],
  cwd: string,
  env: NodeJS.ProcessEnv = {},
  /** Sees stderr as it comes, before the server listens (e.g. "waiting for PostgreSQL"). */
  onStderr?: (text: string) => void,
): Promise<ServerProcess> {
  const child = spawn(process.execPath, [CLI, 'run', ...args], {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
    onStderr?.(stderr);
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    child.on('exit', (code, signal) => res({ code, signal })),
  );
  return new Promise((resolvePromise, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (\S+)/.exec(stdout);
      if (m) resolvePromise({ child, addr: m[1]!, stderr: () => stderr, exited });
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`buffdb run exited (${code ?? signal}) before listening: ${stderr}`)),
    );
  });
}
