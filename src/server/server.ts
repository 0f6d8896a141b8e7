/** Puts buffdb's services on a grpc-js Server — yours, or one we create. */
import {
  Server,
  ServerCredentials,
  type ServerInterceptor,
  type ServerOptions,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { AuthFileSource } from '../auth/auth-file.js';
import {
  DEFAULT_ADDR,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_MEMORY_BUDGET,
  DEFAULT_SHUTDOWN_GRACE_MS,
} from '../defaults.js';
import { AdminService } from '../generated/admin.js';
import { SyncService } from '../generated/sync.js';
import { rekeyLog } from '../store/blob/blob-sync-reset.js';
import type { BuffDb } from '../store/buffdb.js';
import type { BlobEdgeSync } from '../sync/blob-sync.js';
import type { EdgeSync } from '../sync/edge.js';
import { SyncHub } from '../sync/hub.js';
import { type AdminOptions, adminService } from './admin-service.js';
import { type AuthSource, authInterceptor } from './auth-interceptor.js';
import { OpenStreams } from './etcd/common.js';
import { type EtcdListener, listenEtcd } from './etcd/listener.js';
import { WindowShare, widenWindows } from './flow-window.js';
import type { HealthStatus } from './health.js';
import { MemoryBudget } from './memory-budget.js';
import { countBytes, type ObserveOptions, observeCalls } from './observe.js';
import { buffDbServices, memoryBudgetOf, type ServeOptions } from './services.js';
import { syncService } from './sync-service.js';

export {
  DEFAULT_ADDR,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_MEMORY_BUDGET,
  MemoryBudget,
  type ServeOptions,
  WindowShare,
  widenWindows,
};

/**
 * Adds buffdb's services (backed by `db`) to an existing grpc-js server; returns the memory budget
 * their calls share.
 */
export function addBuffDbServices(server: Server, db: BuffDb, options: ServeOptions = {}): MemoryBudget {
  const budget = memoryBudgetOf(options);
  const { metrics } = options;
  for (const service of buffDbServices(db, options, budget)) {
    const definition = metrics ? countBytes(service.definition, metrics) : service.definition;
    server.addService(definition as unknown as ServiceDefinition, service.implementation);
  }
  return budget;
}

/** The services whose health is reported (besides the overall status ""). */
export const SERVICE_NAMES = [
  'buffdb.kv.Kv',
  'buffdb.blob.Blob',
  'buffdb.query.Query',
  'buffdb.admin.Admin',
  'buffdb.sync.Sync',
  'etcdserverpb.KV',
  'etcdserverpb.Watch',
  'etcdserverpb.Lease',
  'etcdserverpb.Maintenance',
  'etcdserverpb.Cluster',
] as const;

export interface StartOptions extends ServeOptions {
  addr?: string;
  maxMessageSize?: number;
  grpcOptions?: ServerOptions;
  /** Also serve only the etcd services on this address (`buffdb run --etcd-listen`). */
  etcdListen?: string;
  /** TLS or mutual TLS (src/server/tls.ts); plaintext by default. */
  credentials?: ServerCredentials;
  /**
   * Run around every call before its handler; the first sees a call's metadata and messages first
   * and its status last (metrics first, then auth: src/server/observe.ts, auth-interceptor.ts).
   */
  interceptors?: ServerInterceptor[];
  /**
   * Authentication and permissions (src/server/auth-interceptor.ts): every call needs a token or
   * client certificate from this source, except health checks. Off when absent.
   */
  auth?: AuthSource;
  /**
   * Metrics and logs for every call (observe.ts): counts, latency, open streams, slow requests and
   * server-side errors. Off when absent.
   */
  observe?: ObserveOptions;
  /** The stores were opened read-only: health reports NOT_SERVING ("read-only"). */
  readOnly?: boolean;
  /** buffdb.admin.Admin (backup); with auth on it needs the admin right. */
  admin?: AdminOptions;
  /** Serve grpc.reflection v1 and v1alpha (default true). */
  reflection?: boolean;
  /** This server's link to a hub (`buffdb run --sync-to`): reported by buffdb.sync.Sync/Status, stopped at shutdown. */
  syncEdge?: EdgeSync;
  /** This server's blob link to the hub: reported by Status, stopped at shutdown. */
  syncBlobEdge?: BlobEdgeSync;
}

export interface RunningServer {
  server: Server;
  /** The address actually bound (with the real port when 0 was asked for). */
  addr: string;
  port: number;
  /** The `etcdListen` address actually bound, when one was asked for. */
  etcdAddr?: string;
  /** What the calls hold now (`used`), at most (`limit`), and the most so far (`peak`). */
  memoryBudget: MemoryBudget;
  /** The part of `memoryBudget` held for wide HTTP/2 windows (flow-window.ts). */
  windowShare: WindowShare;
  /** This server as a sync hub: the edges' links open now. */
  syncHub: SyncHub;
  /**
   * grpc.health.v1 status: SERVING while no reason against it holds. Raise a reason with
   * `health.set('database connection lost', true)` and clear it with `…, false)`.
   */
  health: HealthStatus;
  /**
   * Stops accepting calls, lets in-flight streams finish (at most `graceMs`), commits everything
   * queued, then closes the stores.
   */
  shutdown(graceMs?: number): Promise<void>;
}

function withPort(addr: string, port: number): string {
  const i = addr.lastIndexOf(':');
  return `${addr.slice(0, i)}:${port}`;
}

/** The interceptors every listener runs: observation first (it sees refused calls too), then auth. */
function interceptorsFor(db: BuffDb, options: StartOptions): ServerInterceptor[] {
  return [
    ...(options.observe ? [observeCalls(options.observe)] : []),
    ...(options.grpcOptions?.interceptors ?? []),
    ...(options.interceptors ?? []),
    ...(options.auth
      ? [
          authInterceptor(options.auth, (sql, target) => db.query.isReadOnly(sql, target === 1 ? 'blob' : 'kv'), {
            leaseKeys: async (id) => (await db.kv.leases.timeToLive(id, true)).keys,
          }),
        ]
      : []),
  ];
}

export async function startServer(db: BuffDb, options: StartOptions = {}): Promise<RunningServer> {
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  const interceptors = interceptorsFor(db, options);
  const server = new Server({
    'grpc.max_receive_message_length': maxMessageSize,
    'grpc.max_send_message_length': maxMessageSize,
    ...options.grpcOptions,
    interceptors,
  });
  const metrics = options.metrics ?? options.observe?.metrics;
  // One registry for both listeners: stopping ends every etcd watch and keep-alive stream.
  const streams = options.etcd?.streams ?? new OpenStreams();
  const auth = options.auth instanceof AuthFileSource ? options.auth : undefined;
  const serve = { ...options, metrics, etcd: { ...options.etcd, streams, auth: options.etcd?.auth ?? auth } };
  const memoryBudget = addBuffDbServices(server, db, serve);
  server.addService(metrics ? countBytes(AdminService, metrics) : AdminService, adminService(db, options.admin));
  const syncStop = new AbortController();
  const syncHub = new SyncHub(db.sync);
  server.addService(
    (metrics ? countBytes(SyncService, metrics) : SyncService) as unknown as ServiceDefinition,
    syncService(db, {
      hub: syncHub,
      edge: options.syncEdge,
      blobEdge: options.syncBlobEdge,
      signal: syncStop.signal,
      budget: memoryBudget,
      onRekey: (m) => options.observe?.log?.warn(...rekeyLog(m)),
    }),
  );
  // Loaded here: grpc-health-check parses its .proto when imported.
  const { HealthStatus } = await import('./health.js');
  const health = new HealthStatus(SERVICE_NAMES);
  health.addToServer(server);
  if (options.readOnly) health.set('read-only', true);
  if (db.kv.damaged) health.set('the KV store is damaged', true);
  if (options.reflection !== false) {
    // Loaded only here: it parses the .proto files.
    const { addReflection } = await import('./reflection.js');
    try {
      addReflection(server);
    } catch (err) {
      // A .proto that protobufjs cannot read must not stop the data services.
      options.observe?.log?.error(
        { err: (err as Error).message },
        'reflection is off: the .proto files could not be read',
      );
    }
  }
  const addr = options.addr ?? DEFAULT_ADDR;
  const credentials = options.credentials ?? ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(addr, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  let etcd: EtcdListener | undefined;
  if (options.etcdListen) {
    try {
      etcd = await listenEtcd(db, options.etcdListen, serve.etcd, { credentials, interceptors, budget: memoryBudget });
    } catch (err) {
      server.forceShutdown();
      throw new Error(`etcd listener ${options.etcdListen}: ${(err as Error).message}`);
    }
  }
  const windowShare = new WindowShare(memoryBudget);
  for (const listener of etcd ? [server, etcd.server] : [server]) {
    if (!widenWindows(listener, windowShare))
      options.observe?.log?.warn('HTTP/2 windows stay at 64 KiB: this grpc-js does not expose its HTTP/2 servers');
  }
  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = DEFAULT_SHUTDOWN_GRACE_MS): Promise<void> => {
    stopping ??= (async () => {
      health.set('shutting down', true);
      health.endWatches();
      // Watches, keep-alives and sync links never end on their own: end them so the grace is for real work.
      streams.endAll();
      syncStop.abort();
      await Promise.all([options.syncEdge?.stop(), options.syncBlobEdge?.stop()]);
      etcd?.server.forceShutdown();
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => {
          server.forceShutdown();
          resolve();
        }, graceMs);
        server.tryShutdown(() => {
          clearTimeout(timer);
          resolve();
        });
      });
      await db.close();
    })();
    return stopping;
  };
  const etcdAddr = etcd && options.etcdListen ? withPort(options.etcdListen, etcd.port) : undefined;
  return { server, addr: withPort(addr, port), port, etcdAddr, memoryBudget, windowShare, syncHub, health, shutdown };
}
