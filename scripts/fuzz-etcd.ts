/**
 * The etcd services for the fuzzer (scripts/fuzz.ts): every method with valid seed requests to
 * mutate, and hand-made cases with the exact status etcd gives them. Imports only types from
 * fuzz.ts (fuzz.ts builds its method list from this module).
 */
import { status } from '@grpc/grpc-js';
import * as pb from '../src/generated/etcd/etcdserverpb/rpc.js';
import type { FuzzCase, MethodSpec } from './fuzz.js';

interface Codec<T> {
  encode(message: T): { finish(): Uint8Array };
  fromPartial(partial: object): T;
}

const b = (s: string): Buffer => Buffer.from(s);
const enc = <T>(codec: Codec<T>, ...msgs: object[]): Uint8Array[] =>
  msgs.map((m) => codec.encode(codec.fromPartial(m)).finish());
const hex = (codec: Codec<unknown>, msg: object): string => Buffer.from(enc(codec, msg)[0]!).toString('hex');

const put = (key: string, value = 'v') => ({ requestPut: { key: b(key), value: b(value) } });

/** Every etcd method buffdb answers, Watch as a stream that stays open (as etcd's does). */
export const ETCD_METHODS: MethodSpec[] = [
  {
    path: '/etcdserverpb.KV/Range',
    kind: 'unary',
    seeds: enc(
      pb.RangeRequest,
      { key: b('fuzz-a') },
      { key: Buffer.of(0), rangeEnd: Buffer.of(0), limit: 3n, sortOrder: 2, sortTarget: 3, keysOnly: true },
      { key: b('fuzz'), rangeEnd: b('fuzz0'), revision: 1n, countOnly: true, minModRevision: 2n },
    ),
  },
  {
    path: '/etcdserverpb.KV/Put',
    kind: 'unary',
    seeds: enc(
      pb.PutRequest,
      { key: b('fuzz-etcd'), value: b('value') },
      { key: b('fuzz-etcd'), value: Buffer.from([0, 0xff]), prevKv: true },
    ),
  },
  {
    path: '/etcdserverpb.KV/DeleteRange',
    kind: 'unary',
    seeds: enc(pb.DeleteRangeRequest, { key: b('fuzz-gone'), rangeEnd: b('fuzz-gonf'), prevKv: true }),
  },
  {
    path: '/etcdserverpb.KV/Txn',
    kind: 'unary',
    seeds: enc(pb.TxnRequest, {
      compare: [{ key: b('fuzz-etcd'), target: 3, result: 0, value: b('value') }],
      success: [put('fuzz-txn'), { requestRange: { key: b('fuzz-txn') } }],
      failure: [{ requestDeleteRange: { key: b('fuzz-txn') } }, { requestTxn: { success: [put('fuzz-nested')] } }],
    }),
  },
  { path: '/etcdserverpb.KV/Compact', kind: 'unary', seeds: enc(pb.CompactionRequest, { revision: 1n }) },
  {
    path: '/etcdserverpb.Watch/Watch',
    kind: 'watch',
    seeds: enc(
      pb.WatchRequest,
      { createRequest: { key: b('fuzz'), rangeEnd: b('fuzz0'), startRevision: 1n, prevKv: true, fragment: true } },
      { createRequest: { key: b('fuzz-etcd'), watchId: 7n, filters: [0, 1], progressNotify: true } },
      { cancelRequest: { watchId: 7n } },
      { progressRequest: {} },
    ),
  },
  { path: '/etcdserverpb.Lease/LeaseGrant', kind: 'unary', seeds: enc(pb.LeaseGrantRequest, { TTL: 5n }) },
  { path: '/etcdserverpb.Lease/LeaseRevoke', kind: 'unary', seeds: enc(pb.LeaseRevokeRequest, { ID: 1n }) },
  { path: '/etcdserverpb.Lease/LeaseKeepAlive', kind: 'bidi', seeds: enc(pb.LeaseKeepAliveRequest, { ID: 1n }) },
  {
    path: '/etcdserverpb.Lease/LeaseTimeToLive',
    kind: 'unary',
    seeds: enc(pb.LeaseTimeToLiveRequest, { ID: 1n, keys: true }),
  },
  { path: '/etcdserverpb.Lease/LeaseLeases', kind: 'unary', seeds: enc(pb.LeaseLeasesRequest, {}) },
  { path: '/etcdserverpb.Maintenance/Status', kind: 'unary', seeds: enc(pb.StatusRequest, {}) },
  { path: '/etcdserverpb.Maintenance/Alarm', kind: 'unary', seeds: enc(pb.AlarmRequest, { action: 0 }) },
  { path: '/etcdserverpb.Cluster/MemberList', kind: 'unary', seeds: enc(pb.MemberListRequest, { linearizable: true }) },
];

const { INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, UNIMPLEMENTED, OK } = status;

/** Requests etcd refuses, each with etcd's status (the message is checked by test/fuzz.test.ts). */
export function etcdStrictCases(): FuzzCase[] {
  const kvPath = (m: string) => `/etcdserverpb.KV/${m}`;
  return [
    { name: 'etcd Range empty key', method: kvPath('Range'), payloads: [''], expect: [INVALID_ARGUMENT] },
    {
      name: 'etcd Range unknown sort order 9',
      method: kvPath('Range'),
      payloads: [hex(pb.RangeRequest, { key: b('k'), sortOrder: 9 })],
      expect: [INVALID_ARGUMENT],
    },
    {
      name: 'etcd Range future revision',
      method: kvPath('Range'),
      payloads: [hex(pb.RangeRequest, { key: b('k'), revision: 1n << 40n })],
      expect: [OUT_OF_RANGE],
    },
    {
      name: 'etcd Put empty key',
      method: kvPath('Put'),
      payloads: [hex(pb.PutRequest, { value: b('v') })],
      expect: [INVALID_ARGUMENT],
    },
    {
      name: 'etcd Put ignore_value with a value',
      method: kvPath('Put'),
      payloads: [hex(pb.PutRequest, { key: b('k'), value: b('v'), ignoreValue: true })],
      expect: [INVALID_ARGUMENT],
    },
    {
      name: 'etcd Put with a lease that does not exist',
      method: kvPath('Put'),
      payloads: [hex(pb.PutRequest, { key: b('k'), value: b('v'), lease: 4242n })],
      expect: [NOT_FOUND],
    },
    {
      name: 'etcd Txn putting a key twice',
      method: kvPath('Txn'),
      payloads: [hex(pb.TxnRequest, { success: [put('dup'), put('dup')] })],
      expect: [INVALID_ARGUMENT],
    },
    {
      name: 'etcd Txn with an empty operation',
      method: kvPath('Txn'),
      payloads: [hex(pb.TxnRequest, { success: [{}] })],
      expect: [INVALID_ARGUMENT],
    },
    {
      name: 'etcd Txn nested 200 deep',
      method: kvPath('Txn'),
      payloads: [
        hex(
          pb.TxnRequest,
          Array.from({ length: 200 }).reduce<object>((inner) => ({ success: [{ requestTxn: inner }] }), {}),
        ),
      ],
      expect: [OK, INVALID_ARGUMENT],
    },
    {
      name: 'etcd Compact of a future revision',
      method: kvPath('Compact'),
      payloads: [hex(pb.CompactionRequest, { revision: 1n << 40n })],
      expect: [OUT_OF_RANGE],
    },
    {
      name: 'etcd Watch create with a key length beyond the message',
      method: '/etcdserverpb.Watch/Watch',
      payloads: ['0a050a80808008'],
      expect: [INVALID_ARGUMENT],
    },
    {
      name: 'etcd LeaseRevoke of a lease that does not exist',
      method: '/etcdserverpb.Lease/LeaseRevoke',
      payloads: [hex(pb.LeaseRevokeRequest, { ID: 987654321n })],
      expect: [NOT_FOUND],
    },
    {
      name: 'etcd LeaseGrant TTL too large',
      method: '/etcdserverpb.Lease/LeaseGrant',
      payloads: [hex(pb.LeaseGrantRequest, { TTL: 9_000_000_001n })],
      expect: [OUT_OF_RANGE],
    },
    {
      name: 'etcd Alarm ACTIVATE',
      method: '/etcdserverpb.Maintenance/Alarm',
      payloads: [hex(pb.AlarmRequest, { action: 1, alarm: 1 })],
      expect: [UNIMPLEMENTED],
    },
    { name: 'etcd Auth AuthEnable', method: '/etcdserverpb.Auth/AuthEnable', payloads: [''], expect: [UNIMPLEMENTED] },
    {
      name: 'etcd Maintenance Snapshot',
      method: '/etcdserverpb.Maintenance/Snapshot',
      payloads: [''],
      expect: [UNIMPLEMENTED],
    },
    {
      name: 'etcd Cluster MemberAdd',
      method: '/etcdserverpb.Cluster/MemberAdd',
      payloads: [''],
      expect: [UNIMPLEMENTED],
    },
    { name: 'etcd KV RangeStream', method: kvPath('RangeStream'), payloads: [''], expect: [UNIMPLEMENTED] },
  ];
}
