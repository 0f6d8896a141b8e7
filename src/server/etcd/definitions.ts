/**
 * The etcd v3 services as grpc-js definitions, for serving etcd clients next to buffdb's own
 * services. Paths are etcd's (`/etcdserverpb.KV/Range`, …): its package and service names are
 * the wire contract. Built with `method`, so strings are strict UTF-8 and a request that fails to
 * decode reaches the handler as a `DecodeFailure`.
 */
import * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import { method } from '../codec.js';

/** `method` for etcd service `service`, taking the method name: the path is `/etcdserverpb.<service>/<name>`. */
const rpcsOf =
  (service: string): typeof method =>
  (name, ...rest) =>
    method(`/etcdserverpb.${service}/${name}`, ...rest);

const kv = rpcsOf('KV');
export const EtcdKvDefinition = {
  range: kv('Range', false, false, pb.RangeRequest, pb.RangeResponse),
  rangeStream: kv('RangeStream', false, true, pb.RangeRequest, pb.RangeStreamResponse),
  put: kv('Put', false, false, pb.PutRequest, pb.PutResponse),
  deleteRange: kv('DeleteRange', false, false, pb.DeleteRangeRequest, pb.DeleteRangeResponse),
  txn: kv('Txn', false, false, pb.TxnRequest, pb.TxnResponse),
  compact: kv('Compact', false, false, pb.CompactionRequest, pb.CompactionResponse),
} as const;

export const EtcdWatchDefinition = {
  watch: rpcsOf('Watch')('Watch', true, true, pb.WatchRequest, pb.WatchResponse),
} as const;

const lease = rpcsOf('Lease');
export const EtcdLeaseDefinition = {
  leaseGrant: lease('LeaseGrant', false, false, pb.LeaseGrantRequest, pb.LeaseGrantResponse),
  leaseRevoke: lease('LeaseRevoke', false, false, pb.LeaseRevokeRequest, pb.LeaseRevokeResponse),
  leaseKeepAlive: lease('LeaseKeepAlive', true, true, pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse),
  leaseTimeToLive: lease('LeaseTimeToLive', false, false, pb.LeaseTimeToLiveRequest, pb.LeaseTimeToLiveResponse),
  leaseLeases: lease('LeaseLeases', false, false, pb.LeaseLeasesRequest, pb.LeaseLeasesResponse),
} as const;

const cluster = rpcsOf('Cluster');
export const EtcdClusterDefinition = {
  memberAdd: cluster('MemberAdd', false, false, pb.MemberAddRequest, pb.MemberAddResponse),
  memberRemove: cluster('MemberRemove', false, false, pb.MemberRemoveRequest, pb.MemberRemoveResponse),
  memberUpdate: cluster('MemberUpdate', false, false, pb.MemberUpdateRequest, pb.MemberUpdateResponse),
  memberList: cluster('MemberList', false, false, pb.MemberListRequest, pb.MemberListResponse),
  memberPromote: cluster('MemberPromote', false, false, pb.MemberPromoteRequest, pb.MemberPromoteResponse),
} as const;

const maintenance = rpcsOf('Maintenance');
export const EtcdMaintenanceDefinition = {
  alarm: maintenance('Alarm', false, false, pb.AlarmRequest, pb.AlarmResponse),
  status: maintenance('Status', false, false, pb.StatusRequest, pb.StatusResponse),
  defragment: maintenance('Defragment', false, false, pb.DefragmentRequest, pb.DefragmentResponse),
  hash: maintenance('Hash', false, false, pb.HashRequest, pb.HashResponse),
  hashKV: maintenance('HashKV', false, false, pb.HashKVRequest, pb.HashKVResponse),
  snapshot: maintenance('Snapshot', false, true, pb.SnapshotRequest, pb.SnapshotResponse),
  moveLeader: maintenance('MoveLeader', false, false, pb.MoveLeaderRequest, pb.MoveLeaderResponse),
  downgrade: maintenance('Downgrade', false, false, pb.DowngradeRequest, pb.DowngradeResponse),
} as const;

const auth = rpcsOf('Auth');
export const EtcdAuthDefinition = {
  authEnable: auth('AuthEnable', false, false, pb.AuthEnableRequest, pb.AuthEnableResponse),
  authDisable: auth('AuthDisable', false, false, pb.AuthDisableRequest, pb.AuthDisableResponse),
  authStatus: auth('AuthStatus', false, false, pb.AuthStatusRequest, pb.AuthStatusResponse),
  authenticate: auth('Authenticate', false, false, pb.AuthenticateRequest, pb.AuthenticateResponse),
  userAdd: auth('UserAdd', false, false, pb.AuthUserAddRequest, pb.AuthUserAddResponse),
  userGet: auth('UserGet', false, false, pb.AuthUserGetRequest, pb.AuthUserGetResponse),
  userList: auth('UserList', false, false, pb.AuthUserListRequest, pb.AuthUserListResponse),
  userDelete: auth('UserDelete', false, false, pb.AuthUserDeleteRequest, pb.AuthUserDeleteResponse),
  userChangePassword: auth(
    'UserChangePassword',
    false,
    false,
    pb.AuthUserChangePasswordRequest,
    pb.AuthUserChangePasswordResponse,
  ),
  userGrantRole: auth('UserGrantRole', false, false, pb.AuthUserGrantRoleRequest, pb.AuthUserGrantRoleResponse),
  userRevokeRole: auth('UserRevokeRole', false, false, pb.AuthUserRevokeRoleRequest, pb.AuthUserRevokeRoleResponse),
  roleAdd: auth('RoleAdd', false, false, pb.AuthRoleAddRequest, pb.AuthRoleAddResponse),
  roleGet: auth('RoleGet', false, false, pb.AuthRoleGetRequest, pb.AuthRoleGetResponse),
  roleList: auth('RoleList', false, false, pb.AuthRoleListRequest, pb.AuthRoleListResponse),
  roleDelete: auth('RoleDelete', false, false, pb.AuthRoleDeleteRequest, pb.AuthRoleDeleteResponse),
  roleGrantPermission: auth(
    'RoleGrantPermission',
    false,
    false,
    pb.AuthRoleGrantPermissionRequest,
    pb.AuthRoleGrantPermissionResponse,
  ),
  roleRevokePermission: auth(
    'RoleRevokePermission',
    false,
    false,
    pb.AuthRoleRevokePermissionRequest,
    pb.AuthRoleRevokePermissionResponse,
  ),
} as const;

/** Every etcd service buffdb can serve, by gRPC service name. */
export const EtcdDefinitions = {
  KV: EtcdKvDefinition,
  Watch: EtcdWatchDefinition,
  Lease: EtcdLeaseDefinition,
  Cluster: EtcdClusterDefinition,
  Maintenance: EtcdMaintenanceDefinition,
  Auth: EtcdAuthDefinition,
} as const;
