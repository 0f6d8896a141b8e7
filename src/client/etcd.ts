/**
 * Typed grpc-js clients of the etcd v3 API (buffdb's etcd services or a real etcd), on one
 * channel. Any etcd client works with buffdb; these are for code that wants the raw messages.
 */
import { type ChannelCredentials, type ClientOptions, credentials } from '@grpc/grpc-js';
import {
  AuthClient,
  ClusterClient,
  KVClient,
  LeaseClient,
  MaintenanceClient,
  WatchClient,
} from '../generated/etcd/etcdserverpb/rpc.js';

export interface EtcdClients {
  kv: KVClient;
  watch: WatchClient;
  lease: LeaseClient;
  maintenance: MaintenanceClient;
  cluster: ClusterClient;
  auth: AuthClient;
  close(): void;
}

/** Connects to an etcd endpoint, e.g. `connectEtcd('127.0.0.1:2379')`. */
export function connectEtcd(
  addr: string,
  creds: ChannelCredentials = credentials.createInsecure(),
  options: Partial<ClientOptions> = {},
): EtcdClients {
  const kv = new KVClient(addr, creds, options);
  const shared = { ...options, channelOverride: kv.getChannel() };
  return {
    kv,
    watch: new WatchClient(addr, creds, shared),
    lease: new LeaseClient(addr, creds, shared),
    maintenance: new MaintenanceClient(addr, creds, shared),
    cluster: new ClusterClient(addr, creds, shared),
    auth: new AuthClient(addr, creds, shared),
    close: () => kv.close(),
  };
}
