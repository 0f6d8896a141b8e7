/**
 * The extra listener `buffdb run --etcd-listen ADDR`: a grpc-js server with only the etcd
 * services, with etcd's message limits (requests up to max-request-bytes + 512 KiB), for clients
 * that expect an etcd endpoint of their own (127.0.0.1:2379).
 */
import { Server, ServerCredentials, type ServerInterceptor, type ServiceDefinition } from '@grpc/grpc-js';
import { DEFAULT_ETCD_MAX_REQUEST_BYTES, ETCD_GRPC_OVERHEAD_BYTES } from '../../defaults.js';
import type { BuffDb } from '../../store/buffdb.js';
import { MemoryBudget } from '../memory-budget.js';
import { type EtcdOptions, etcdServices } from './services.js';

/** What the etcd listener shares with the main one: TLS, the interceptors (metrics, auth), the budget. */
export interface ListenerShared {
  credentials?: ServerCredentials;
  interceptors?: ServerInterceptor[];
  budget?: MemoryBudget;
}

export interface EtcdListener {
  server: Server;
  /** The port bound (the real one when 0 was asked for). */
  port: number;
}

export async function listenEtcd(
  db: BuffDb,
  addr: string,
  options: EtcdOptions = {},
  shared: ListenerShared = {},
): Promise<EtcdListener> {
  const credentials = shared.credentials ?? ServerCredentials.createInsecure();
  const server = new Server({
    interceptors: shared.interceptors ?? [],
    'grpc.max_receive_message_length':
      (options.maxRequestBytes ?? DEFAULT_ETCD_MAX_REQUEST_BYTES) + ETCD_GRPC_OVERHEAD_BYTES,
    // etcd sends responses of any size (a large Range or watch batch); so does this listener.
    'grpc.max_send_message_length': -1,
  });
  for (const s of etcdServices(db, options, shared.budget ?? new MemoryBudget()))
    server.addService(s.definition as unknown as ServiceDefinition, s.implementation);
  const port = await new Promise<number>((resolve, reject) => {
    server.bindAsync(addr, credentials, (err, p) => (err ? reject(err) : resolve(p)));
  });
  return { server, port };
}
