/** Test fixtures: a real buffdb server on a loopback port over real files in a temp directory. */

import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientDuplexStream, ClientWritableStream, ServiceError } from '@grpc/grpc-js';
import { BACKEND_NAMES, type BackendName, capabilitiesOf, isBackendName } from '../../src/backends/index.js';
import { type BuffDbClients, connect } from '../../src/client/network.js';
import { type RunningServer, type StartOptions, startServer } from '../../src/server/server.js';
import { BuffDb, type BuffDbOptions } from '../../src/store/buffdb.js';
import { storeLocator } from './postgres.js';

export const ROOT = resolve(import.meta.dirname, '..', '..');
/** The built executable (npm test builds first), run as users run it. */
export const CLI = join(ROOT, 'dist', 'cli', 'main.js');

/**
 * The backends named by BUFFDB_TEST_BACKENDS (comma-separated); every backend when it is unset.
 * Set but naming no backend, or naming an unknown one, is an error: otherwise the
 * backend-parameterised suites would register no test at all and pass.
 */
export function parseTestBackends(value: string | undefined): string[] {
  if (value === undefined) return [...BACKEND_NAMES];
  const names = value
    .split(',')
    .map((name) => name.trim())
    .filter(Boolean);
  const choices = `unset it to test every backend, or list some of: ${BACKEND_NAMES.join(', ')}`;
  if (names.length === 0) throw new Error(`BUFFDB_TEST_BACKENDS is set but names no backend; ${choices}`);
  const unknown = names.filter((name) => !isBackendName(name));
  if (unknown.length > 0) {
    throw new Error(
      `BUFFDB_TEST_BACKENDS names unknown backend ${unknown.map((n) => JSON.stringify(n)).join(', ')}; ${choices}`,
    );
  }
  return names;
}

/** Backends the backend-parameterised suites run against. */
export const TEST_BACKENDS: string[] = parseTestBackends(process.env.BUFFDB_TEST_BACKENDS);

/**
 * Polls `probe` (a behaviour, not a duration) until it returns true; fails after `deadlineMs`.
 * For events a test can only observe by asking.
 */
export async function eventually(
  probe: () => Promise<boolean> | boolean,
  what: string,
  deadlineMs = 10_000,
): Promise<void> {
  const end = performance.now() + deadlineMs;
  while (performance.now() < end) {
    if (await probe()) return;
    await sleep(20);
  }
  assert.fail(`never happened within ${deadlineMs} ms: ${what}`);
}

const madeDirs: string[] = [];

/** A new folder under the system's temp folder, removed when the test process exits. */
export function tempDir(prefix = 'buffdb-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  if (madeDirs.push(dir) === 1)
    process.once('exit', () => {
      for (const d of madeDirs) rmSync(d, { recursive: true, force: true });
    });
  return dir;
}

/** Whether this process may mount filesystems (root in a permissive sandbox): for real full-disk tests. */
export function canMount(): boolean {
  if (process.getuid?.() !== 0) return false;
  const dir = tempDir('buffdb-mount-probe-');
  try {
    if (spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]).status !== 0) return false;
    spawnSync('umount', [dir]);
    return true;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
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

/** `serve`: server options beside the address (etcd settings, a second etcd listener, …). */
export async function startTestServer(
  options: BuffDbOptions & { dir?: string; serve?: Omit<StartOptions, 'addr'> } = {},
): Promise<TestServer> {
  const { serve, ...dbOptions } = options;
  const dir = options.dir ?? tempDir();
  // Stores that are URLs (postgres) get a fresh schema each, dropped by dispose().
  const urls =
    typeof options.backend === 'string' && capabilitiesOf(options.backend as BackendName).storeLocation === 'url';
  const stores = urls ? await storeLocator(options.backend as string) : undefined;
  const db = await BuffDb.open({
    ...(stores ? stores.locate('srv') : { kvStore: join(dir, 'kv_store.db'), blobStore: join(dir, 'blob_store.db') }),
    ...dbOptions,
  });
  const running = await startServer(db, { ...serve, addr: '127.0.0.1:0' });
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

export /** Writes `count` requests as fast as the stream accepts them (waiting for 'drain'), then ends. */
function writeAll<Req>(call: ClientDuplexStream<Req, unknown>, count: number, make: (i: number) => Req): void {
  let i = 0;
  const more = (): void => {
    while (i < count) {
      if (!call.write(make(i++))) {
        call.once('drain', more);
        return;
      }
    }
    call.end();
  };
  more();
}

export interface ServerProcess {
  child: ChildProcess;
  addr: string;
  /** The `--etcd-listen` address, when that flag was given. */
  etcdAddr?: string;
  stderr: () => string;
  /** Resolves once stderr matches `re`; rejects if the process exits first or after `deadlineMs`. */
  waitForStderr(re: RegExp, deadlineMs?: number): Promise<void>;
  stdout: () => string;
  /** Resolves with the exit code (or signal). */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface ServerStores {
  /** A temporary directory for the server process (its working directory). */
  dir: string;
  /** `buffdb run` arguments: a loopback address on a free port, the backend and its stores. */
  args(...extra: string[]): string[];
  /** Removes the directory and (URL backends) the stores' schemas. */
  dispose(): Promise<void>;
}

/** Stores for a `buffdb run` process: files in a fresh directory, or (URL backends) fresh schemas. */
export async function serverStores(backend: string, prefix = 'buffdb-srv-'): Promise<ServerStores> {
  const dir = tempDir(prefix);
  const urls = capabilitiesOf(backend as BackendName).storeLocation === 'url';
  const stores = urls ? await storeLocator(backend) : undefined;
  const { kvStore, blobStore } = stores
    ? stores.locate('srv')
    : { kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') };
  return {
    dir,
    args: (...extra) => [
      '127.0.0.1:0',
      '--backend',
      backend,
      '--kv-store',
      kvStore,
      '--blob-store',
      blobStore,
      ...extra,
    ],
    dispose: async () => {
      await stores?.dispose();
      rmSync(dir, { recursive: true, force: true });
    },
  };
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
  // 'close' comes after the last stderr chunk; 'exit' may come before it.
  let closed = false;
  child.on('close', () => {
    closed = true;
  });
  const waitForStderr = (re: RegExp, deadlineMs = 10_000): Promise<void> =>
    new Promise((resolveWait, rejectWait) => {
      const timer = setTimeout(() => {
        cleanup();
        rejectWait(new Error(`stderr did not match ${re} within ${deadlineMs} ms: ${stderr}`));
      }, deadlineMs);
      const check = (): void => {
        if (!re.test(stderr)) return;
        cleanup();
        resolveWait();
      };
      const onClose = (): void => {
        cleanup();
        rejectWait(new Error(`buffdb run exited before stderr matched ${re}: ${stderr}`));
      };
      const cleanup = (): void => {
        clearTimeout(timer);
        child.stderr!.off('data', check);
        child.off('close', onClose);
      };
      // Registered after the accumulating listener above, so `stderr` already holds the new chunk.
      child.stderr!.on('data', check);
      child.once('close', onClose);
      check();
      if (closed && !re.test(stderr)) onClose();
    });
  return new Promise((resolvePromise, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /^listening on (\S+)/m.exec(stdout);
      const etcd = /^etcd listening on (\S+)/m.exec(stdout);
      if (m && (etcd || !args.includes('--etcd-listen'))) {
        resolvePromise({
          child,
          addr: m[1]!,
          etcdAddr: etcd?.[1],
          stderr: () => stderr,
          stdout: () => stdout,
          waitForStderr,
          exited,
        });
      }
    });
    void exited.then(({ code, signal }) =>
      reject(new Error(`buffdb run exited (${code ?? signal}) before listening: ${stderr}`)),
    );
  });
}
