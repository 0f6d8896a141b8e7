/**
 * Who may call which etcd method, checked by the auth interceptor before the handler sees the
 * request — etcd's rules over buffdb's permission model (src/auth/permissions.ts):
 *
 * - KV Range, Put, DeleteRange, Txn and Watch create requests need kv read or write on every key of
 *   their range ([key, range_end), compared as bytes); `prev_kv` also needs read; a Txn needs read on
 *   every compare and the rights of every operation in both branches. Compact needs admin.
 * - LeaseRevoke needs write, LeaseTimeToLive read, on every key attached to the lease; LeaseGrant,
 *   LeaseKeepAlive and LeaseLeases only a valid caller.
 * - Maintenance Status and Cluster MemberList need a valid caller; the rest of those services admin.
 * - Auth: Authenticate is open; AuthStatus needs a valid caller; UserGet of oneself and RoleGet of
 *   one's own role need nothing more; everything else admin (the root role, or a token with --admin).
 *
 * The admin right gives no kv access of its own: an admin token reads and writes keys only through
 * kv grants. A refusal is etcd's "etcdserver: permission denied" (PERMISSION_DENIED).
 */

import { allowsSpan, holdsAny, type Principal, type Right } from '../../auth/permissions.js';
import type * as pb from '../../generated/etcd/etcdserverpb/rpc.js';
import { etcdSpan } from '../../store/kv/key-span.js';

export const ETCD_PERMISSION_DENIED = 'etcdserver: permission denied';

/** What a check may ask of the store: the keys attached to a lease. */
export interface EtcdAuthHooks {
  leaseKeys?: (id: bigint) => Promise<Buffer[]>;
}

type Check = (
  principal: Principal,
  message: never,
  hooks: EtcdAuthHooks,
) => boolean | undefined | Promise<boolean | undefined>;

export interface EtcdRule {
  /** open: no credentials at all; admin: the admin right, before any message. */
  call: 'open' | 'authenticated' | 'admin';
  /** Each request message: false refuses it (undefined or true lets it through). */
  message?: Check;
}

const isAdmin = (p: Principal): boolean => holdsAny(p, 'admin', 'read');

/** A request's key range; an empty key is refused by the handler itself (etcd's "key is not provided"). */
function may(p: Principal, right: Right, key: Buffer, rangeEnd: Buffer = Buffer.alloc(0)): boolean {
  return key.length === 0 || allowsSpan(p, right, etcdSpan(key, rangeEnd));
}

const range = (p: Principal, r: pb.RangeRequest) => may(p, 'read', r.key, r.rangeEnd);
const put = (p: Principal, r: pb.PutRequest) => may(p, 'write', r.key) && (!r.prevKv || may(p, 'read', r.key));
const del = (p: Principal, r: pb.DeleteRangeRequest) =>
  may(p, 'write', r.key, r.rangeEnd) && (!r.prevKv || may(p, 'read', r.key, r.rangeEnd));

function op(p: Principal, o: pb.RequestOp): boolean {
  if (o.requestRange) return range(p, o.requestRange);
  if (o.requestPut) return put(p, o.requestPut);
  if (o.requestDeleteRange) return del(p, o.requestDeleteRange);
  if (o.requestTxn) return txn(p, o.requestTxn);
  return true;
}

function txn(p: Principal, t: pb.TxnRequest): boolean {
  return (
    t.compare.every((c) => may(p, 'read', c.key, c.rangeEnd)) &&
    t.success.every((o) => op(p, o)) &&
    t.failure.every((o) => op(p, o))
  );
}

/** Whether `p` holds `right` on every key attached to the lease (a lease that cannot be read: the handler answers). */
const leaseKeys =
  (right: Right): Check =>
  async (p, r: { ID: bigint }, hooks) => {
    if (!hooks.leaseKeys) return undefined;
    let keys: Buffer[];
    try {
      keys = await hooks.leaseKeys(r.ID);
    } catch {
      return undefined;
    }
    return keys.every((k) => may(p, right, k));
  };

const open: EtcdRule = { call: 'open' };
const authenticated: EtcdRule = { call: 'authenticated' };
const admin: EtcdRule = { call: 'admin' };
const each = (message: Check): EtcdRule => ({ call: 'authenticated', message });
const anyOf = (paths: string[], rule: EtcdRule) => Object.fromEntries(paths.map((p) => [p, rule]));
const methods = (service: string, names: string[]) => names.map((n) => `/etcdserverpb.${service}/${n}`);

export const ETCD_RULES: Record<string, EtcdRule> = {
  '/etcdserverpb.KV/Range': each(range as Check),
  '/etcdserverpb.KV/RangeStream': each(range as Check),
  '/etcdserverpb.KV/Put': each(put as Check),
  '/etcdserverpb.KV/DeleteRange': each(del as Check),
  '/etcdserverpb.KV/Txn': each(txn as Check),
  '/etcdserverpb.KV/Compact': admin,
  '/etcdserverpb.Watch/Watch': each(((p: Principal, r: pb.WatchRequest) =>
    // An empty key is the smallest key, "\0" (as the watch handler reads it).
    r.createRequest
      ? may(p, 'read', r.createRequest.key.length ? r.createRequest.key : Buffer.of(0), r.createRequest.rangeEnd)
      : true) as Check),
  '/etcdserverpb.Lease/LeaseRevoke': each(leaseKeys('write')),
  '/etcdserverpb.Lease/LeaseTimeToLive': each(leaseKeys('read')),
  ...anyOf(methods('Lease', ['LeaseGrant', 'LeaseKeepAlive', 'LeaseLeases']), authenticated),
  '/etcdserverpb.Maintenance/Status': authenticated,
  ...anyOf(
    methods('Maintenance', ['Alarm', 'Defragment', 'Hash', 'HashKV', 'Snapshot', 'MoveLeader', 'Downgrade']),
    admin,
  ),
  '/etcdserverpb.Cluster/MemberList': authenticated,
  ...anyOf(methods('Cluster', ['MemberAdd', 'MemberRemove', 'MemberUpdate', 'MemberPromote']), admin),
  '/etcdserverpb.Auth/Authenticate': open,
  '/etcdserverpb.Auth/AuthStatus': authenticated,
  '/etcdserverpb.Auth/UserGet': each(
    ((p: Principal, r: pb.AuthUserGetRequest) => isAdmin(p) || (p.kind === 'user' && p.name === r.name)) as Check,
  ),
  '/etcdserverpb.Auth/RoleGet': each(
    ((p: Principal, r: pb.AuthRoleGetRequest) =>
      isAdmin(p) || (p.kind === 'user' && (p.roles ?? []).includes(r.role))) as Check,
  ),
  ...anyOf(
    methods('Auth', [
      'AuthEnable',
      'AuthDisable',
      'UserAdd',
      'UserList',
      'UserDelete',
      'UserChangePassword',
      'UserGrantRole',
      'UserRevokeRole',
      'RoleAdd',
      'RoleList',
      'RoleDelete',
      'RoleGrantPermission',
      'RoleRevokePermission',
    ]),
    admin,
  ),
};

/** The call-level decision for an etcd rule: undefined when allowed. */
export function etcdCallDenied(rule: EtcdRule, principal: Principal): string | undefined {
  return rule.call === 'admin' && !isAdmin(principal) ? ETCD_PERMISSION_DENIED : undefined;
}
