/** etcdserverpb.Cluster: MemberList names this server as the one member; the rest is UNIMPLEMENTED. */
import type { ServerUnaryCall, sendUnaryData, UntypedServiceImplementation } from '@grpc/grpc-js';
import type * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import type { KvStore } from '../../store/kv/kv-store.js';
import type { DecodeFailure } from '../codec.js';
import { header, unary, withUnimplemented } from './common.js';
import { EtcdClusterDefinition } from './definitions.js';

type Call<Req, Res> = [ServerUnaryCall<Req | DecodeFailure, Res>, sendUnaryData<Res>];

/** The member's name in MemberList. */
export const MEMBER_NAME = 'buffdb';

export interface ClusterOptions {
  /** The URLs clients reach this server at; default: the address the client dialed. */
  clientUrls?: string[];
}

export function etcdClusterService(kv: KvStore, options: ClusterOptions = {}): UntypedServiceImplementation {
  return withUnimplemented(
    'etcdserverpb.Cluster',
    EtcdClusterDefinition,
    'buffdb is a single-member cluster; only MemberList is served',
    {
      memberList: (...[call, callback]: Call<pb.MemberListRequest, pb.MemberListResponse>) =>
        unary(call, callback, () => {
          const h = header(kv);
          // The in-process client has no host: fall back to nothing rather than guess.
          const host = typeof call.getHost === 'function' ? call.getHost() : '';
          const clientURLs = options.clientUrls ?? (host ? [`http://${host}`] : []);
          return {
            header: h,
            members: [{ ID: h.memberId, name: MEMBER_NAME, peerURLs: [], clientURLs, isLearner: false }],
          };
        }),
    },
  );
}
