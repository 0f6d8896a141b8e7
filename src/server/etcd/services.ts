/**
 * The etcd v3 services over a BuffDb, as entries for the service list (src/server/services.ts):
 * KV, Watch, Lease, Maintenance (Status, Alarm), Cluster (MemberList), Auth (users and roles in the
 * auth file, when the server has one).
 */

import type { MethodDefinition } from '@grpc/grpc-js';
import type { AuthFileSource } from '../../auth/auth-file.js';
import {
  DEFAULT_ETCD_MAX_REQUEST_BYTES,
  DEFAULT_ETCD_PROGRESS_NOTIFY_MS,
  ETCD_GRPC_OVERHEAD_BYTES,
} from '../../defaults.js';
import type { BuffDb } from '../../store/buffdb.js';
import { DecodeFailure } from '../codec.js';
import { MemoryBudget } from '../memory-budget.js';
import type { ServiceEntry } from '../services.js';
import { etcdAuthService } from './auth-service.js';
import { etcdClusterService } from './cluster-service.js';
import { OpenStreams, withUnimplemented } from './common.js';
import {
  EtcdAuthDefinition,
  EtcdClusterDefinition,
  EtcdKvDefinition,
  EtcdLeaseDefinition,
  EtcdMaintenanceDefinition,
  EtcdWatchDefinition,
} from './definitions.js';
import { etcdKvService } from './kv-service.js';
import { etcdLeaseService } from './lease-service.js';
import { etcdMaintenanceService } from './maintenance-service.js';
import { ERR_REQUEST_TOO_LARGE } from './validate.js';
import { etcdWatchService } from './watch-service.js';

export interface EtcdOptions {
  /** Largest encoded write request (etcd's --max-request-bytes; default 1.5 MiB). */
  maxRequestBytes?: number;
  /** Interval of progress notifications for idle watchers that asked (default 10 minutes, as etcd). */
  progressNotifyIntervalMs?: number;
  /** The URLs clients reach this server at, for MemberList (default: the address the client dialed). */
  clientUrls?: string[];
  /** Long-lived streams, ended when the server stops (startServer passes its own). */
  streams?: OpenStreams;
  /** The auth file, for etcdserverpb.Auth (startServer passes its `auth` when that is one). */
  auth?: AuthFileSource;
}

/** Methods whose requests are writes, checked against max-request-bytes as etcd checks proposals. */
const WRITES = new Set(['put', 'deleteRange', 'txn', 'compact', 'leaseGrant', 'leaseRevoke']);

/**
 * A copy of `definition` whose write methods answer a request above `maxBytes` with etcd's
 * "request is too large" (INVALID_ARGUMENT) before decoding it.
 */
function sizeLimited<D extends object>(definition: D, maxBytes: number): D {
  const out: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, m] of Object.entries(definition as Record<string, MethodDefinition<unknown, unknown>>)) {
    out[name] = WRITES.has(name)
      ? {
          ...m,
          requestDeserialize: (buf: Buffer) =>
            buf.length > maxBytes ? new DecodeFailure(ERR_REQUEST_TOO_LARGE) : m.requestDeserialize(buf),
        }
      : m;
  }
  return out as D;
}

export function etcdServices(
  db: BuffDb,
  options: EtcdOptions = {},
  budget: MemoryBudget = new MemoryBudget(),
): ServiceEntry[] {
  const maxRequestBytes = options.maxRequestBytes ?? DEFAULT_ETCD_MAX_REQUEST_BYTES;
  const streams = options.streams ?? new OpenStreams();
  const watch = {
    fragmentBytes: maxRequestBytes + ETCD_GRPC_OVERHEAD_BYTES,
    progressNotifyIntervalMs: options.progressNotifyIntervalMs ?? DEFAULT_ETCD_PROGRESS_NOTIFY_MS,
    streams,
  };
  return [
    {
      name: 'etcdKv',
      definition: sizeLimited(EtcdKvDefinition, maxRequestBytes),
      implementation: etcdKvService(db.kv),
    },
    { name: 'etcdWatch', definition: EtcdWatchDefinition, implementation: etcdWatchService(db.kv, watch) },
    {
      name: 'etcdLease',
      definition: sizeLimited(EtcdLeaseDefinition, maxRequestBytes),
      implementation: etcdLeaseService(db.kv, streams, budget),
    },
    { name: 'etcdMaintenance', definition: EtcdMaintenanceDefinition, implementation: etcdMaintenanceService(db) },
    {
      name: 'etcdCluster',
      definition: EtcdClusterDefinition,
      implementation: etcdClusterService(db.kv, { clientUrls: options.clientUrls }),
    },
    {
      name: 'etcdAuth',
      definition: EtcdAuthDefinition,
      implementation: withUnimplemented(
        'etcdserverpb.Auth',
        EtcdAuthDefinition,
        'no such auth method',
        etcdAuthService(db.kv, options.auth),
      ),
    },
  ];
}
