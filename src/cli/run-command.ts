/** `buffdb run`: open the stores, serve Kv, Blob and Query, stop cleanly on SIGINT/SIGTERM. */
import type { Backend, Durability } from '../backends/backend.js';
import { loadBackend } from '../backends/index.js';
import { DEFAULT_SHUTDOWN_GRACE_MS } from '../defaults.js';
import { StoreError, status } from '../errors.js';
import { startServer } from '../server/server.js';
import { BuffDb } from '../store/buffdb.js';
import type { AutoCompactSetting } from './etcd-options.js';
import { CliError, EXIT } from './exit-codes.js';

export interface RunOptions {
  addr: string;
  kvStore: string;
  blobStore: string;
  backend: string;
  maxMessageSize: number;
  /** Bytes of request and response data held across all calls (`--memory-budget`). */
  memoryBudget?: number;
  durability: Durability;
  readOnly: boolean;
  /** Default lifetime of a transaction that is neither committed nor rolled back. */
  transactionTimeoutMs?: number;
  /** Also serve only the etcd services here (docs/etcd.md). */
  etcdListen?: string;
  /** Largest etcd write request (etcd's --max-request-bytes). */
  etcdMaxRequestBytes?: number;
  /** History kept (default: the last 100 000 revisions). */
  autoCompact?: AutoCompactSetting;
}

/**
 * How long in-flight streams get to finish after SIGINT/SIGTERM before they are cut:
 * 10 s, or BUFFDB_SHUTDOWN_GRACE_MS (a positive number of milliseconds).
 */
function shutdownGraceMs(): number {
  const n = Number(process.env.BUFFDB_SHUTDOWN_GRACE_MS);
  return Number.isSafeInteger(n) && n > 0 ? n : DEFAULT_SHUTDOWN_GRACE_MS;
}

/**
 * Checks a store path from the command line before any engine sees it (the backend's rules), so a
 * mistake gets a sentence naming the path: a malformed path is a usage error (exit 2).
 */
function checkStorePath(backend: Backend, path: string, label: string, readOnly: boolean): void {
  try {
    backend.checkPath?.(path, label, readOnly);
  } catch (err) {
    if (err instanceof StoreError && err.code === status.INVALID_ARGUMENT) throw new CliError(EXIT.USAGE, err.message);
    throw err;
  }
}

export async function runServer(options: RunOptions): Promise<void> {
  const backend = await loadBackend(options.backend);
  checkStorePath(backend, options.kvStore, 'KV', options.readOnly);
  checkStorePath(backend, options.blobStore, 'BLOB', options.readOnly);
  const db = await BuffDb.open({
    backend,
    maxMessageSize: options.maxMessageSize,
    kvStore: options.kvStore,
    blobStore: options.blobStore,
    durability: options.durability,
    readOnly: options.readOnly,
    transactionTimeoutMs: options.transactionTimeoutMs,
    autoCompact: options.autoCompact,
  });
  let running: Awaited<ReturnType<typeof startServer>>;
  try {
    running = await startServer(db, {
      addr: options.addr,
      maxMessageSize: options.maxMessageSize,
      etcdListen: options.etcdListen,
      etcd: { maxRequestBytes: options.etcdMaxRequestBytes },
      memoryBudget: options.memoryBudget,
    });
  } catch (err) {
    await db.close();
    throw new Error(`cannot listen on ${options.addr}: ${(err as Error).message}`);
  }
  // Logs name addresses and paths only: never request contents, keys or values.
  const log = (msg: string): void => {
    process.stderr.write(`${new Date().toISOString()} buffdb: ${msg}\n`);
  };
  // Handlers first: a supervisor may signal as soon as it reads the line below.
  const graceMs = shutdownGraceMs();
  let signals = 0;
  const stop = (signal: string): void => {
    signals++;
    if (signals > 1) {
      log(`${signal} again: exiting now`);
      process.exit(130);
    }
    log(`${signal}: finishing in-flight streams (at most ${graceMs / 1000} s), then exiting (send again to force)`);
    running.shutdown(graceMs).then(
      () => {
        log('stopped; every acknowledged write is committed');
        process.exit(0);
      },
      (err: unknown) => {
        log(`shutdown failed: ${(err as Error).message}`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  log(
    `listening on ${running.addr} (backend ${options.backend}, kv ${options.kvStore}, blob ${options.blobStore}` +
      `${options.readOnly ? ', read-only' : ''}${running.etcdAddr ? `; etcd API alone on ${running.etcdAddr}` : ''})`,
  );
  // Machine-readable lines on stdout, for scripts and tests that start the server on port 0.
  process.stdout.write(`listening on ${running.addr}\n`);
  if (running.etcdAddr) process.stdout.write(`etcd listening on ${running.etcdAddr}\n`);
}
