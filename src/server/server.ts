/** Puts buffdb's three services on a grpc-js Server — yours, or one we create. */
import {
  Server,
  ServerCredentials,
  type ServerInterceptor,
  type ServerOptions,
  type ServiceDefinition,
  type UntypedServiceImplementation,
} from '@grpc/grpc-js';
import { DEFAULT_ADDR, DEFAULT_MAX_MESSAGE_SIZE } from '../defaults.js';
import { AdminService } from '../generated/admin.js';
import type { BuffDb } from '../store/buffdb.js';
import { type AdminOptions, adminService } from './admin-service.js';
import { type AuthSource, authInterceptor } from './auth-interceptor.js';
import { blobService } from './blob-service.js';
import { BlobDefinition, KvDefinition, QueryDefinition } from './definitions.js';
import type { HealthStatus } from './health.js';
import { kvService } from './kv-service.js';
import type { Metrics } from './metrics.js';
import { countBytes, type ObserveOptions, observeCalls } from './observe.js';
import { queryService } from './query-service.js';
import { type TransactionService, transactionService } from './transaction-service.js';

export { DEFAULT_ADDR, DEFAULT_MAX_MESSAGE_SIZE };

export interface ServeOptions {
  /** Defaults to real transactions over `db.transactions` (docs/transactions.md). */
  transactions?: TransactionService;
  /** Count the bytes of every message in these metrics. */
  metrics?: Metrics;
}

/** Adds the Kv, Blob and Query services (backed by `db`) to an existing grpc-js server. */
export function addBuffDbServices(server: Server, db: BuffDb, options: ServeOptions = {}): void {
  const { metrics } = options;
  const add = (definition: object, implementation: UntypedServiceImplementation): void =>
    server.addService((metrics ? countBytes(definition, metrics) : definition) as ServiceDefinition, implementation);
  add(KvDefinition, kvService(db.kv, options.transactions ?? transactionService(db.transactions)));
  add(BlobDefinition, blobService(db.blob));
  add(QueryDefinition, queryService(db.query));
}

/** The services whose health is reported (besides the overall status ""). */
export const SERVICE_NAMES = ['buffdb.kv.Kv', 'buffdb.blob.Blob', 'buffdb.query.Query', 'buffdb.admin.Admin'] as const;

export interface StartOptions extends ServeOptions {
  addr?: string;
  maxMessageSize?: number;
  grpcOptions?: ServerOptions;
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
}

export interface RunningServer {
  server: Server;
  /** The address actually bound (with the real port when 0 was asked for). */
  addr: string;
  port: number;
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

export async function startServer(db: BuffDb, options: StartOptions = {}): Promise<RunningServer> {
  const maxMessageSize = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  const server = new Server({
    'grpc.max_receive_message_length': maxMessageSize,
    'grpc.max_send_message_length': maxMessageSize,
    ...options.grpcOptions,
    interceptors: [
      // First: it sees every call, the ones auth refuses included.
      ...(options.observe ? [observeCalls(options.observe)] : []),
      ...(options.grpcOptions?.interceptors ?? []),
      ...(options.interceptors ?? []),
      ...(options.auth
        ? [authInterceptor(options.auth, (sql, target) => db.query.isReadOnly(sql, target === 1 ? 'blob' : 'kv'))]
        : []),
    ],
  });
  const metrics = options.metrics ?? options.observe?.metrics;
  addBuffDbServices(server, db, { ...options, metrics });
  server.addService(metrics ? countBytes(AdminService, metrics) : AdminService, adminService(db, options.admin));
  // Loaded here: grpc-health-check parses its .proto when imported.
  const { HealthStatus } = await import('./health.js');
  const health = new HealthStatus(SERVICE_NAMES);
  health.addToServer(server);
  if (options.readOnly) health.set('read-only', true);
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
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(addr, options.credentials ?? ServerCredentials.createInsecure(), (err, p) =>
      err ? reject(err) : resolve(p),
    );
  });
  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = 10_000): Promise<void> => {
    stopping ??= (async () => {
      health.set('shutting down', true);
      health.endWatches();
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
  return { server, addr: withPort(addr, port), port, health, shutdown };
}
