/** etcdserverpb.Lease: grant, revoke, keep-alive stream, time-to-live, list — over db.kv.leases. */

import type { ServerDuplexStream, ServerUnaryCall, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import type * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import { settle } from '../../store/group-commit.js';
import type { KvStore } from '../../store/kv/kv-store.js';
import type { DecodeFailure } from '../codec.js';
import type { MemoryBudget } from '../memory-budget.js';
import { serveBidi } from '../stream-handler.js';
import { etcdError, header, type OpenStreams, safeNumber, trackStream, unary, withUnimplemented } from './common.js';
import { EtcdLeaseDefinition } from './definitions.js';

type Call<Req, Res> = [ServerUnaryCall<Req | DecodeFailure, Res>, sendUnaryData<Res>];

export function etcdLeaseService(
  kv: KvStore,
  streams: OpenStreams,
  budget: MemoryBudget,
): UntypedServiceImplementation {
  const { leases } = kv;
  return withUnimplemented('etcdserverpb.Lease', EtcdLeaseDefinition, 'no such lease method', {
    leaseGrant: (...[call, callback]: Call<pb.LeaseGrantRequest, pb.LeaseGrantResponse>) =>
      unary(call, callback, async (req) => {
        const r = await leases.grant(safeNumber(req.TTL), req.ID);
        return { header: header(kv, r.rev), ID: r.id, TTL: BigInt(r.ttl), error: '' };
      }),

    leaseRevoke: (...[call, callback]: Call<pb.LeaseRevokeRequest, pb.LeaseRevokeResponse>) =>
      unary(call, callback, async (req) => ({ header: header(kv, await leases.revoke(req.ID)) })),

    // One answer per request, in order; a lease that does not exist answers TTL 0 (not an error).
    leaseKeepAlive: (call: ServerDuplexStream<pb.LeaseKeepAliveRequest | DecodeFailure, pb.LeaseKeepAliveResponse>) => {
      trackStream(streams, call);
      serveBidi<pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse>(call, budget, (req, reply) => {
        leases.keepAlive(req.ID).then(
          (r) => settle(reply, null, { header: header(kv, r.rev), ID: req.ID, TTL: BigInt(r.ttl) }),
          (err: unknown) => settle(reply, etcdError(err)),
        );
      });
    },

    leaseTimeToLive: (...[call, callback]: Call<pb.LeaseTimeToLiveRequest, pb.LeaseTimeToLiveResponse>) =>
      unary(call, callback, async (req) => {
        const r = await leases.timeToLive(req.ID, req.keys);
        return {
          header: header(kv, r.rev),
          ID: req.ID,
          TTL: BigInt(r.ttl),
          grantedTTL: BigInt(r.grantedTtl),
          keys: r.keys,
        };
      }),

    leaseLeases: (...[call, callback]: Call<pb.LeaseLeasesRequest, pb.LeaseLeasesResponse>) =>
      unary(call, callback, async () => {
        const r = await leases.list();
        return { header: header(kv, r.rev), leases: r.ids.map((ID) => ({ ID })) };
      }),
  });
}
