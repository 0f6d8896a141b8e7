/** Puts buffdb's three services on a grpc-js Server — yours, or one we create. */
import { Server, ServerCredentials, type ServerOptions, type ServiceDefinition } from '@grpc/grpc-js';
import { DEFAULT_ADDR, DEFAULT_MAX_MESSAGE_SIZE, DEFAULT_SHUTDOWN_GRACE_MS } from '../defaults.js';
import type { BuffDb } from '../store/buffdb.js';
import { buffDbServices, type ServeOptions } from './services.js';

export { DEFAULT_ADDR, DEFAULT_MAX_MESSAGE_SIZE, type ServeOptions };

/** Adds buffdb's services (backed by `db`) to an existing grpc-js server. */
export function addBuffDbServices(server: Server, db: BuffDb, options: ServeOptions = {}): void {
  for (const service of buffDbServices(db, options)) {
    server.addService(service.definition as unknown as ServiceDefinition, service.implementation);
  }
}

export interface StartOptions extends ServeOptions {
  addr?: string;
  maxMessageSize?: number;
  grpcOptions?: ServerOptions;
}

export interface RunningServer {
  server: Server;
  /** The address actually bound (with the real port when 0 was asked for). */
  addr: string;
  port: number;
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
  addBuffDbServices(server, db, options);
  const addr = options.addr ?? DEFAULT_ADDR;
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(addr, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p)));
  });
  let stopping: Promise<void> | undefined;
  const shutdown = (graceMs = DEFAULT_SHUTDOWN_GRACE_MS): Promise<void> => {
    stopping ??= (async () => {
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
  return { server, addr: withPort(addr, port), port, shutdown };
}
