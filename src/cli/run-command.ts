/**
 * `buffdb run`: open the stores, serve Kv, Blob and Query (with health and reflection, and TLS,
 * auth and metrics when asked), reload certificates on SIGHUP, stop cleanly on SIGINT/SIGTERM.
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { LevelWithSilent } from 'pino';
import { AuthFileSource } from '../auth/auth-file.js';
import type { Durability } from '../backends/backend.js';
import { createLogger } from '../server/logger.js';
import type { Metrics, MetricsServer } from '../server/metrics.js';
import { startServer } from '../server/server.js';
import { ReloadableTls } from '../server/tls.js';
import { BuffDb } from '../store/buffdb.js';
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
  /** TLS: the server's certificate chain and key (PEM); both or neither. */
  tlsCert?: string;
  tlsKey?: string;
  /** Mutual TLS: clients must present a certificate signed by this CA bundle (PEM). */
  tlsClientCa?: string;
  /** Auth on: tokens and certificate subjects from this file (src/auth/auth-file.ts). */
  authFile?: string;
  logLevel?: LevelWithSilent;
  /** Serve Prometheus metrics at http://ADDR/metrics. */
  metricsAddr?: string;
  /** Log requests slower than this (ms; 0: never). */
  slowMs?: number;
}

/** Checks that the TLS flags make sense together; reading the files comes later (exit 4 if bad). */
export function checkTlsFlags(o: Pick<RunOptions, 'tlsCert' | 'tlsKey' | 'tlsClientCa'>): void {
  if ((o.tlsCert === undefined) !== (o.tlsKey === undefined)) {
    throw new CliError(EXIT.USAGE, '--tls-cert and --tls-key go together: give both, or neither for plaintext');
  }
  if (o.tlsClientCa !== undefined && o.tlsCert === undefined) {
    throw new CliError(EXIT.USAGE, '--tls-client-ca needs --tls-cert and --tls-key (mutual TLS is TLS first)');
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
  checkTlsFlags(options);
  const log = createLogger(options.logLevel ?? 'info');
  // Certificates are read before the stores are opened: a bad file is one line and exit 4.
  const tls =
    options.tlsCert === undefined
      ? undefined
      : new ReloadableTls({ cert: options.tlsCert, key: options.tlsKey!, clientCa: options.tlsClientCa });
  const auth = options.authFile === undefined ? undefined : new AuthFileSource(options.authFile);
  validateStorePath(options.kvStore, 'KV', options.readOnly, options.backend);
  validateStorePath(options.blobStore, 'BLOB', options.readOnly, options.backend);
  const db = await BuffDb.open({
    backend: options.backend,
    kvStore: options.kvStore,
    blobStore: options.blobStore,
    durability: options.durability,
    readOnly: options.readOnly,
    transactionTimeoutMs: options.transactionTimeoutMs,
  });
  let metrics: Metrics | undefined;
  let metricsServer: MetricsServer | undefined;
  if (options.metricsAddr !== undefined) {
    // Loaded only when asked for: prom-client costs start-up time.
    const { Metrics, serveMetrics } = await import('../server/metrics.js');
    metrics = new Metrics(db, { kv: options.kvStore, blob: options.blobStore });
    try {
      metricsServer = await serveMetrics(metrics, options.metricsAddr);
    } catch (err) {
      await db.close();
      throw new Error(`cannot serve metrics on ${options.metricsAddr}: ${(err as Error).message}`);
    }
  }
  let running: Awaited<ReturnType<typeof startServer>>;
  try {
    running = await startServer(db, {
      observe: { metrics, log, slowMs: options.slowMs ?? 0 },
      addr: options.addr,
      maxMessageSize: options.maxMessageSize,
      credentials: tls?.credentials,
      auth,
      readOnly: options.readOnly,
      // Backup copies are made beside the stores (same filesystem, and room for them).
      admin: { workDir: dirname(resolve(options.kvStore)) },
    });
  } catch (err) {
    await metricsServer?.close();
    await db.close();
    throw new Error(`cannot listen on ${options.addr}: ${(err as Error).message}`);
  }
  // Handlers first: a supervisor may signal as soon as it reads the line below.
  const graceMs = shutdownGraceMs();
  let signals = 0;
  const stop = (signal: string): void => {
    signals++;
    if (signals > 1) {
      log.warn({ signal }, `${signal} again: exiting now`);
      process.exit(130);
    }
    log.info(
      { signal, graceMs },
      `${signal}: finishing in-flight streams (at most ${graceMs / 1000} s), then exiting (send again to force)`,
    );
    running.shutdown(graceMs).then(
      () => {
        log.info('stopped; every acknowledged write is committed');
        process.exit(0);
      },
      (err: unknown) => {
        log.error({ err: (err as Error).message }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
  // SIGHUP: read the certificate files and the auth file again; new connections and calls use them.
  const reloadable: [string, { reload(): void } | undefined][] = [
    ['TLS certificates', tls],
    ['auth file', auth],
  ];
  process.on('SIGHUP', () => {
    for (const [what, source] of reloadable) {
      if (!source) continue;
      try {
        source.reload();
        log.info(`SIGHUP: ${what} reloaded`);
      } catch (err) {
        log.error({ err: (err as Error).message }, `SIGHUP: ${what} not reloaded; the previous version stays in use`);
      }
    }
  });
  log.info(
    {
      addr: running.addr,
      backend: options.backend,
      kvStore: options.kvStore,
      blobStore: options.blobStore,
      readOnly: options.readOnly,
      tls: tls ? (options.tlsClientCa ? 'mutual' : 'server') : 'off',
      auth: auth !== undefined,
      metrics: metricsServer ? `http://${metricsServer.addr}/metrics` : 'off',
    },
    `listening on ${running.addr}`,
  );
  if (auth && !tls) {
    log.warn('auth is on without TLS: tokens travel in clear text (use --tls-cert and --tls-key off loopback)');
  }
  // Machine-readable lines on stdout, for scripts and tests that start the server on port 0
  // (the metrics line first, so it is there once the listening line is).
  if (metricsServer) process.stdout.write(`metrics on http://${metricsServer.addr}/metrics\n`);
  process.stdout.write(`listening on ${running.addr}\n`);
}
