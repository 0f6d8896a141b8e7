/** Puts buffdb's three services on a grpc-js Server — yours, or one we create. */
import { Server, ServerCredentials, type ServerOptions, type ServiceDefinition } from '@grpc/grpc-js';
import {
  DEFAULT_ADDR,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_MEMORY_BUDGET,
  DEFAULT_SHUTDOWN_GRACE_MS,
} from '../defaults.js';
import type { BuffDb } from '../store/buffdb.js';
import { OpenStreams } from './etcd/common.js';
import { type EtcdListener, listenEtcd } from './etcd/listener.js';
import { MemoryBudget } from './memory-budget.js';
import { buffDbServices, memoryBudgetOf, type ServeOptions } from './services.js';

export { DEFAULT_ADDR, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_MEMORY_BUDGET, MemoryBudget, type ServeOptions };

/**
 * Adds buffdb's services (backed by `db`) to an existing grpc-js server; returns the memory budget
 * their calls share.
 */
export function addBuffDbServices(server: Server, db: BuffDb, options: ServeOptions = {}): MemoryBudget {
  const budget = memoryBudgetOf(options);
  for (const service of buffDbServices(db, options, budget)) {
    server.addService(service.definition as unknown as ServiceDefinition, service.implementation);
  }
  return budget;
}

export interface StartOptions extends ServeOptions {
  addr?: string;
  maxMessageSize?: number;
  grpcOptions?: ServerOptions;
  /** Also serve only the etcd services on this address (`buffdb run --etcd-listen`). */
  etcdListen?: string;
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
  });
  // One registry for both listeners: stopping ends every etcd watch and keep-alive stream.
  const streams = options.etcd?.streams ?? new OpenStreams();
  const serve = { ...options, etcd: { ...options.etcd, streams } };
  const memoryBudget = addBuffDbServices(server, db, serve);
  const addr = options.addr ?? DEFAULT_ADDR;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(addr, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  let etcd: EtcdListener | undefined;
  if (options.etcdListen) {
    try {
      etcd = await listenEtcd(db, options.etcdListen, serve.etcd);
    } catch (err) {
      server.forceShutdown();
      throw new Error(`etcd listener ${options.etcdListen}: ${(err as Error).message}`);
    }
  }
  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = DEFAULT_SHUTDOWN_GRACE_MS): Promise<void> => {
    stopping ??= (async () => {
      // Watches and keep-alives never end on their own: end them so the grace is for real work.
      streams.endAll();
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
  return { server, addr: withPort(addr, port), port, etcdAddr, memoryBudget, shutdown };
}
