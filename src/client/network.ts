/** Typed network clients for a running buffdb server (the same types the transitive client has). */
import { type ChannelCredentials, type ClientOptions, credentials, makeGenericClientConstructor } from '@grpc/grpc-js';
import { DEFAULT_MAX_MESSAGE_SIZE } from '../defaults.js';
import type { BlobClient } from '../generated/blob.js';
import type { KvClient } from '../generated/kv.js';
import type { QueryClient } from '../generated/query.js';
import { BlobDefinition, KvDefinition, QueryDefinition } from '../server/definitions.js';
import { type BlobTransfer, blobTransfer } from './blob-transfer.js';

export type { BlobClient, KvClient, QueryClient };

type Ctor<T> = new (address: string, creds: ChannelCredentials, options?: Partial<ClientOptions>) => T;

export const KvClientCtor = makeGenericClientConstructor(
  KvDefinition as never,
  'buffdb.kv.Kv',
) as unknown as Ctor<KvClient>;
export const BlobClientCtor = makeGenericClientConstructor(
  BlobDefinition as never,
  'buffdb.blob.Blob',
) as unknown as Ctor<BlobClient>;
export const QueryClientCtor = makeGenericClientConstructor(
  QueryDefinition as never,
  'buffdb.query.Query',
) as unknown as Ctor<QueryClient>;

/** The clients, plus `upload` / `download` of large blobs over the Blob client. */
export interface BuffDbClients extends BlobTransfer {
  kv: KvClient;
  blob: BlobClient;
  query: QueryClient;
  close(): void;
}

export interface ConnectOptions {
  credentials?: ChannelCredentials;
  /** Defaults to the server's 64 MiB. */
  maxMessageSize?: number;
  clientOptions?: Partial<ClientOptions>;
}

/** Connects to a buffdb server, e.g. `connect('[::1]:50051')`. The three clients share one channel. */
export function connect(addr = '[::1]:50051', options: ConnectOptions = {}): BuffDbClients {
  const creds = options.credentials ?? credentials.createInsecure();
  const max = options.maxMessageSize ?? DEFAULT_MAX_MESSAGE_SIZE;
  const clientOptions: Partial<ClientOptions> = {
    'grpc.max_receive_message_length': max,
    'grpc.max_send_message_length': max,
    ...options.clientOptions,
  };
  const kv = new KvClientCtor(addr, creds, clientOptions);
  const channelOverride = kv.getChannel();
  const blob = new BlobClientCtor(addr, creds, { ...clientOptions, channelOverride });
  const query = new QueryClientCtor(addr, creds, { ...clientOptions, channelOverride });
  return { kv, blob, query, ...blobTransfer(blob), close: () => kv.close() };
}
