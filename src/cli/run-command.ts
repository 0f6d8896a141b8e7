/** `buffdb run`: open the stores, serve Kv, Blob and Query, stop cleanly on SIGINT/SIGTERM. */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { Durability, PgDialect } from '../backends/backend.js';
import { type BackendName, capabilitiesOf, loadBackend } from '../backends/index.js';
import { startServer } from '../server/server.js';
import { BuffDb } from '../store/buffdb.js';
import { displayLocation } from '../store/open-store.js';
import { CliError, EXIT } from './exit-codes.js';

export interface RunOptions {
  addr: string;
  kvStore: string;
  blobStore: string;
  backend: string;
  maxMessageSize: number;
  durability: Durability;
  readOnly: boolean;
  /** Default lifetime of a transaction that is neither committed nor rolled back. */
  transactionTimeoutMs?: number;
  /** Stores on a database server: wait for it at start instead of exiting (--wait-for-db). */
  waitForDb?: boolean;
  /** Raw SQL statement timeout (--sql-timeout), where the engine can cancel one. */
  sqlTimeoutMs?: number;
  pgDialect?: PgDialect;
}

/** Stores that are URLs (postgres://…) are checked by their backend, files here. */
async function checkStores(options: RunOptions): Promise<void> {
  if (capabilitiesOf(options.backend as BackendName).storeLocation !== 'url') {
    validateStorePath(options.kvStore, 'KV', options.readOnly, options.backend);
    validateStorePath(options.blobStore, 'BLOB', options.readOnly, options.backend);
    return;
  }
  const backend = await loadBackend(options.backend);
  for (const [path, label] of [
    [options.kvStore, 'KV'],
    [options.blobStore, 'BLOB'],
  ] as const) {
    try {
      backend.checkPath?.(path, label, options.readOnly);
    } catch (err) {
      throw new CliError(EXIT.USAGE, (err as Error).message);
    }
  }
}

/**
 * How long in-flight streams get to finish after SIGINT/SIGTERM before they are cut:
 * 10 s, or BUFFDB_SHUTDOWN_GRACE_MS (a positive number of milliseconds).
 */
function shutdownGraceMs(): number {
  const n = Number(process.env.BUFFDB_SHUTDOWN_GRACE_MS);
  return Number.isSafeInteger(n) && n > 0 ? n : 10_000;
}

/**
 * Checks a store path from the command line before any engine sees it, so a mistake gets a
 * sentence naming the path instead of an engine's "unable to open database file".
 */
export function validateStorePath(path: string, label: string, readOnly: boolean, backend: string): void {
  const option = `--${label.toLowerCase()}-store`;
  if (path === '') throw new CliError(EXIT.USAGE, `${option} must not be empty`);
  if (path.includes('\0')) throw new CliError(EXIT.USAGE, `${option} contains a NUL character`);
  if (path === ':memory:') return;
  if (/^file:/i.test(path)) {
    throw new CliError(
      EXIT.USAGE,
      `${option} ${path} looks like a URI; give a plain file path (./${path} if that is really its name)`,
    );
  }
  const abs = resolve(path);
  const st = statSync(abs, { throwIfNoEntry: false });
  if (st?.isDirectory()) {
    throw new Error(
      `${label} store ${path} is a directory; give a file path such as ${path.replace(/\/+$/, '')}/${label.toLowerCase()}_store.db`,
    );
  }
  if (st && !st.isFile()) throw new Error(`${label} store ${path} is not a regular file`);
  if (!st) {
    if (readOnly) throw new Error(`${label} store ${path} does not exist (--read-only serves existing stores only)`);
    const dir = dirname(abs);
    const dst = statSync(dir, { throwIfNoEntry: false });
    if (!dst) throw new Error(`cannot create the ${label} store ${path}: directory ${dir} does not exist`);
    if (!dst.isDirectory()) throw new Error(`cannot create the ${label} store ${path}: ${dir} is not a directory`);
  }
  if (readOnly) {
    // SQLite keeps its WAL index in PATH-shm; on read-only media it must already be there.
    if (backend === 'sqlite' && !writable(dirname(abs)) && !statSync(`${abs}-shm`, { throwIfNoEntry: false })) {
      throw new Error(
        `cannot serve the ${label} store ${path} from a read-only directory: SQLite needs ${path}-shm ` +
          'beside it; copy the store to writable storage (it is still opened read-only)',
      );
    }
    return;
  }
  // The engine writes the store and, next to it, its journal files.
  const dir = dirname(abs);
  if (!writable(dir)) {
    throw new Error(
      `cannot write in ${dir}, the directory of the ${label} store ${path} ` +
        '(read-only filesystem or no permission); use --read-only to serve existing stores read-only',
    );
  }
  if (st && !writable(abs)) {
    throw new Error(`${label} store ${path} is not writable; use --read-only to serve it read-only`);
  }
}

function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

export async function runServer(options: RunOptions): Promise<void> {
  await checkStores(options);
  const db = await BuffDb.open({
    backend: options.backend,
    kvStore: options.kvStore,
    blobStore: options.blobStore,
    durability: options.durability,
    readOnly: options.readOnly,
    transactionTimeoutMs: options.transactionTimeoutMs,
    waitForStore: options.waitForDb,
    sqlTimeoutMs: options.sqlTimeoutMs,
    pgDialect: options.pgDialect,
  });
  let running: Awaited<ReturnType<typeof startServer>>;
  try {
    running = await startServer(db, { addr: options.addr, maxMessageSize: options.maxMessageSize });
  } catch (err) {
    await db.close();
    throw new Error(`cannot listen on ${options.addr}: ${(err as Error).message}`);
  }
  // Transaction ids name this server, so a server sharing the store can say where one lives.
  db.transactions.serverName = running.addr;
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
    `listening on ${running.addr} (backend ${options.backend}, kv ${displayLocation(options.kvStore)}, ` +
      `blob ${displayLocation(options.blobStore)}` +
      `${options.readOnly ? ', read-only' : ''})`,
  );
  // Machine-readable line on stdout, for scripts and tests that start the server on port 0.
  process.stdout.write(`listening on ${running.addr}\n`);
}
