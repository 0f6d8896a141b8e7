/**
 * `buffdb run`: open the stores, serve Kv, Blob, Query and the etcd API (with health and
 * reflection, and TLS, auth and metrics when asked), reload certificates on SIGHUP, stop cleanly
 * on SIGINT/SIGTERM.
 */
import { dirname, resolve } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import type { LevelWithSilent } from 'pino';
import { AuthFileSource } from '../auth/auth-file.js';
import type { Backend, Durability, PgDialect } from '../backends/backend.js';
import { loadBackend } from '../backends/index.js';
import { DEFAULT_HEAP_GROWTH_PERCENT, DEFAULT_SHUTDOWN_GRACE_MS, DEFAULT_YOUNG_HEAP_MIB } from '../defaults.js';
import { StoreError, status } from '../errors.js';
import { createLogger } from '../server/logger.js';
import type { Metrics, MetricsServer } from '../server/metrics.js';
import { startServer } from '../server/server.js';
import { ReloadableTls } from '../server/tls.js';
import { BuffDb } from '../store/buffdb.js';
import { displayLocation } from '../store/open-store.js';
import type { BlobEdgeSync } from '../sync/blob-sync.js';
import type { EdgeSync } from '../sync/edge.js';
import type { SyncHub } from '../sync/hub.js';
import type { AutoCompactSetting } from './etcd-options.js';
import { CliError, EXIT } from './exit-codes.js';
import { channelCredentials } from './remote.js';
import { capYoungGeneration } from './young-generation.js';

export interface RunOptions {
  addr: string;
  kvStore: string;
  blobStore: string;
  backend: string;
  maxMessageSize: number;
  /** Bytes of request and response data held across all calls (`--memory-budget`). */
  memoryBudget?: number;
  /** How far the JS heap may grow past its live data before a full collection (`--heap-growth`, %; 0: V8's own). */
  heapGrowthPercent?: number;
  /** The most V8's young generation may grow to (`--young-heap`, MiB; 0: V8's own, 32 MiB). */
  youngHeapMiB?: number;
  durability: Durability;
  readOnly: boolean;
  /** Default lifetime of a transaction that is neither committed nor rolled back. */
  transactionTimeoutMs?: number;
  /** How long an unfinished resumable upload is kept after its last call (`--upload-ttl`, ms). */
  uploadTtlMs?: number;
  /** How long an etcd user's token lives after its last use (`--etcd-auth-token-ttl`, ms). */
  etcdAuthTokenTtlMs?: number;
  /** Also serve only the etcd services here (docs/etcd.md). */
  etcdListen?: string;
  /** Largest etcd write request (etcd's --max-request-bytes). */
  etcdMaxRequestBytes?: number;
  /** History kept (default: the last 100 000 revisions). */
  autoCompact?: AutoCompactSetting;
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
  /** Stores on a database server: wait for it at start instead of exiting (--wait-for-db). */
  waitForDb?: boolean;
  /** Raw SQL statement timeout (--sql-timeout), where the engine can cancel one. */
  sqlTimeoutMs?: number;
  pgDialect?: PgDialect;
  /** Edge ⇄ hub sync (docs/sync.md); every server is a hub, `to` makes it an edge too. */
  sync?: RunSyncOptions;
}

export interface RunSyncOptions {
  to?: string;
  pushPrefixes?: string[];
  pullPrefixes?: string[];
  maxOfflineMs?: number;
  tlsCa?: string;
  token?: string;
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

/**
 * The server process's heap policy (`--heap-growth`). After a full collection V8 lets the heap grow
 * to up to 4x what stayed live before the next one; under a flood of small requests that kept the
 * server's old space at 3–4x its live data (docs/performance.md, "Heap growth"). V8 reads this
 * setting at every full collection, so setting it at start-up acts as the command-line flag would.
 * Process-wide, so only `buffdb run` sets it, never the library.
 */
function applyHeapGrowth(percent: number): void {
  if (percent > 0) setFlagsFromString(`--heap-growing-percent=${percent}`);
}

export async function runServer(options: RunOptions): Promise<void> {
  checkTlsFlags(options);
  const heapGrowthPercent = options.heapGrowthPercent ?? DEFAULT_HEAP_GROWTH_PERCENT;
  applyHeapGrowth(heapGrowthPercent);
  const youngHeapMiB = options.youngHeapMiB ?? DEFAULT_YOUNG_HEAP_MIB;
  capYoungGeneration(youngHeapMiB);
  const log = createLogger(options.logLevel ?? 'info');
  // Certificates are read before the stores are opened: a bad file is one line and exit 4.
  const tls =
    options.tlsCert === undefined
      ? undefined
      : new ReloadableTls({ cert: options.tlsCert, key: options.tlsKey!, clientCa: options.tlsClientCa });
  const auth =
    options.authFile === undefined
      ? undefined
      : new AuthFileSource(options.authFile, { tokenTtlMs: options.etcdAuthTokenTtlMs });
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
    uploadTtlMs: options.uploadTtlMs,
    autoCompact: options.autoCompact,
    waitForStore: options.waitForDb,
    sqlTimeoutMs: options.sqlTimeoutMs,
    pgDialect: options.pgDialect,
    sync: { maxOfflineMs: options.sync?.maxOfflineMs, edge: options.sync?.to !== undefined },
  });
  const edge = options.sync?.to === undefined ? undefined : await startEdge(db, options.sync, log);
  const blobEdge = options.sync?.to === undefined ? undefined : await startBlobEdge(db, options.sync, log);
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
      memoryBudget: options.memoryBudget,
      etcdListen: options.etcdListen,
      etcd: { maxRequestBytes: options.etcdMaxRequestBytes },
      credentials: tls?.credentials,
      auth,
      readOnly: options.readOnly,
      // Backup copies are made beside the stores (same filesystem, and room for them).
      admin: { workDir: dirname(resolve(options.kvStore)) },
      syncEdge: edge,
      syncBlobEdge: blobEdge,
    });
  } catch (err) {
    await Promise.all([edge?.stop(), blobEdge?.stop()]);
    await metricsServer?.close();
    await db.close();
    throw new Error(`cannot listen on ${options.addr}: ${(err as Error).message}`);
  }
  metrics?.registerGauge(
    'buffdb_memory_budget_bytes_in_use',
    'Request and response data the calls hold now (bytes; the limit is --memory-budget)',
    () => running.memoryBudget.used,
  );
  if (metrics) registerSyncMetrics(metrics, running.syncHub, edge);
  // Transaction ids name this server, so a server sharing the store can say where one lives.
  db.transactions.serverName = running.addr;
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
      etcdAddr: running.etcdAddr,
      backend: options.backend,
      // A store URL's password never reaches a log.
      kvStore: displayLocation(options.kvStore),
      blobStore: displayLocation(options.blobStore),
      readOnly: options.readOnly,
      heapGrowthPercent,
      youngHeapMiB,
      tls: tls ? (options.tlsClientCa ? 'mutual' : 'server') : 'off',
      auth: auth !== undefined,
      metrics: metricsServer ? `http://${metricsServer.addr}/metrics` : 'off',
      syncTo: options.sync?.to ?? 'off',
      site: db.sync.site.toString('hex'),
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
  if (running.etcdAddr) process.stdout.write(`etcd listening on ${running.etcdAddr}\n`);
}

/** Starts the edge's blob link to its hub, beside the KV link (docs/sync.md "Blobs"). */
async function startBlobEdge(
  db: BuffDb,
  sync: RunSyncOptions,
  log: ReturnType<typeof createLogger>,
): Promise<BlobEdgeSync> {
  const { BlobEdgeSync } = await import('../sync/blob-sync.js');
  const { BlobSyncStore } = await import('../store/blob/blob-sync-store.js');
  const { rekeyLog } = await import('../store/blob/blob-sync-reset.js');
  const credentials = sync.tlsCa === undefined ? undefined : channelCredentials({ addr: sync.to!, tlsCa: sync.tlsCa });
  const blobs = new BlobSyncStore(db.blob, {
    maxOfflineMs: db.sync.maxOfflineMs,
    onRekey: (m) => log.warn(...rekeyLog(m)),
  });
  const edge = new BlobEdgeSync(blobs, {
    hub: sync.to!,
    site: () => db.kv.identity.site,
    credentials,
    token: sync.token,
    onLost: (err) => log.warn({ hub: sync.to, err }, 'sync: lost the blob link to the hub; retrying'),
    onReset: () =>
      log.warn(
        { hub: sync.to },
        'sync: away longer than the hub keeps its blob log: receiving its current blobs (blob reset)',
      ),
  });
  // Before the server listens: every blob stored from now on gets a fleet id.
  await edge.sync.join();
  edge.start();
  return edge;
}

/** Starts the edge's link to its hub (it retries in the background for as long as the server runs). */
async function startEdge(db: BuffDb, sync: RunSyncOptions, log: ReturnType<typeof createLogger>): Promise<EdgeSync> {
  const { EdgeSync } = await import('../sync/edge.js');
  const credentials = sync.tlsCa === undefined ? undefined : channelCredentials({ addr: sync.to!, tlsCa: sync.tlsCa });
  const edge = new EdgeSync(db.sync, {
    hub: sync.to!,
    pushPrefixes: (sync.pushPrefixes ?? []).map((p) => Buffer.from(p, 'utf8')),
    pullPrefixes: (sync.pullPrefixes ?? []).map((p) => Buffer.from(p, 'utf8')),
    credentials,
    token: sync.token,
    onEvent: (event, detail) => {
      if (event === 'connected') log.info({ hub: detail }, 'sync: connected to the hub');
      else if (event === 'disconnected') log.warn({ hub: sync.to, err: detail }, 'sync: lost the hub; retrying');
      else if (event === 'reset') {
        log.warn({ hub: detail }, 'sync: away longer than the hub keeps history: receiving its current state (reset)');
      } else log.warn({ site: detail }, 'sync: this store is a restored or copied image: it took a new sync identity');
    },
  });
  if (db.kv.identity.renewedFrom) {
    log.warn(
      { was: db.kv.identity.renewedFrom.toString('hex'), site: db.sync.site.toString('hex') },
      'sync: this store was copied or restored (it lives somewhere new): it took a new sync identity',
    );
  }
  edge.start();
  return edge;
}

/** The figures of `buffdb sync status` as gauges (read at each scrape). */
function registerSyncMetrics(metrics: Metrics, hub: SyncHub, edge: EdgeSync | undefined): void {
  metrics.registerGauge(
    'buffdb_sync_edges_connected',
    'Edges whose sync link to this hub is open now',
    () => hub.edges.size,
  );
  if (!edge) return;
  const gauges: [string, string, () => number | Promise<number>][] = [
    [
      'buffdb_sync_connected',
      '1 while the link to the hub (--sync-to) is up, else 0',
      () => (edge.stats.connected ? 1 : 0),
    ],
    [
      'buffdb_sync_last_success_timestamp_seconds',
      'When a batch last went either way (0: never)',
      () => edge.stats.lastSuccessMs / 1000,
    ],
    ['buffdb_sync_waiting_up_changes', 'Local changes the hub has not acknowledged', () => edge.waitingUp()],
    [
      'buffdb_sync_waiting_down_revisions',
      'Hub revisions known but not applied here',
      () => Math.max(0, edge.stats.peerRev - edge.stats.applied),
    ],
    ['buffdb_sync_sent_bytes', 'Bytes of changes sent to the hub since start', () => edge.stats.bytesSent],
    [
      'buffdb_sync_received_bytes',
      'Bytes of changes received from the hub since start',
      () => edge.stats.bytesReceived,
    ],
    ['buffdb_sync_conflicts', 'Concurrent writes resolved on the link since start', () => edge.stats.conflicts],
  ];
  for (const [name, help, read] of gauges) metrics.registerGauge(name, help, read);
}
