/**
 * Wire compatibility of proto/etcd with a reference nobody here wrote: the .proto files shipped
 * inside the `etcd3` npm client. Both sets are loaded with @grpc/proto-loader and compared type by
 * type (field numbers, types, labels, oneofs; enum numbers) and method by method (paths, message
 * types, streaming); then messages cross between etcd3's codecs and buffdb's generated ones.
 */

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fromBinary, isFieldSet } from '@bufbuild/protobuf';
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  FileDescriptorProtoSchema,
} from '@bufbuild/protobuf/wkt';
import * as protoLoader from '@grpc/proto-loader';
import * as pb from '../src/generated/etcd/etcdserverpb/rpc.js';
import { Event_EventType } from '../src/generated/etcd/mvccpb/kv.js';
import { DecodeFailure } from '../src/server/codec.js';
import { EtcdDefinitions } from '../src/server/etcd/definitions.js';

const ROOT = resolve(import.meta.dirname, '..');
const ETCD3_PROTO_DIR = join(dirname(createRequire(import.meta.url).resolve('etcd3/package.json')), 'proto');
/** The options the etcd3 client loads its protos with (lib/connection-pool.js). */
const ETCD3_LOADER_OPTIONS = { keepCase: true, longs: String, enums: String, defaults: true, oneofs: true };

const loadEtcd3 = () => protoLoader.loadSync(join(ETCD3_PROTO_DIR, 'rpc.proto'), ETCD3_LOADER_OPTIONS);
const loadOurs = () =>
  protoLoader.loadSync('etcd/etcdserverpb/rpc.proto', { ...ETCD3_LOADER_OPTIONS, includeDirs: [join(ROOT, 'proto')] });

interface FieldShape {
  number: number;
  type: string;
  label: string;
  /** Full name of the message or enum type, for message and enum fields. */
  typeName: string;
  /** Name of the oneof the field belongs to. */
  oneof: string;
}
type TypeShape = { kind: 'message'; fields: Map<string, FieldShape> } | { kind: 'enum'; values: Map<number, string> };
interface MethodShape {
  requestType: string;
  responseType: string;
  requestStream: boolean;
  responseStream: boolean;
}

/** A type name as written in a .proto, resolved the protobuf way: innermost enclosing scope first. */
function resolveName(ref: string, scope: string, known: Set<string>): string {
  if (ref.startsWith('.')) return ref.slice(1);
  for (let s = scope; ; s = s.slice(0, Math.max(s.lastIndexOf('.'), 0))) {
    const candidate = s ? `${s}.${ref}` : ref;
    if (known.has(candidate)) return candidate;
    if (!s) return `unresolved:${ref}`;
  }
}

/**
 * Every message, enum and service method of a loaded package definition. Fields come from the
 * file descriptors proto-loader carries (its plain-object view cannot tell oneof members apart).
 */
function shapesOf(def: protoLoader.PackageDefinition) {
  // Each entry carries every file; one decoded copy of each is enough.
  const anyEntry = Object.values(def).find((entry) => 'fileDescriptorProtos' in entry);
  const files = ((anyEntry?.fileDescriptorProtos ?? []) as Uint8Array[]).map((b) =>
    fromBinary(FileDescriptorProtoSchema, b),
  );
  const messages: [string, DescriptorProto][] = [];
  const enums: [string, EnumDescriptorProto][] = [];
  const walk = (scope: string, msgs: DescriptorProto[], ens: EnumDescriptorProto[]) => {
    for (const e of ens) enums.push([`${scope}${e.name}`, e]);
    for (const m of msgs) {
      messages.push([`${scope}${m.name}`, m]);
      walk(`${scope}${m.name}.`, m.nestedType, m.enumType);
    }
  };
  /** Request and response type names by method path. */
  const methodTypes = new Map<string, [string, string]>();
  for (const file of files) {
    walk(file.package ? `${file.package}.` : '', file.messageType, file.enumType);
    for (const service of file.service)
      for (const m of service.method)
        methodTypes.set(`/${file.package}.${service.name}/${m.name}`, [m.inputType, m.outputType]);
  }
  const known = new Set([...messages, ...enums].map(([name]) => name));

  const types = new Map<string, TypeShape>();
  for (const [name, e] of enums)
    types.set(name, { kind: 'enum', values: new Map(e.value.map((v) => [v.number, v.name])) });
  for (const [name, m] of messages) {
    const fields = new Map<string, FieldShape>();
    for (const f of m.field)
      fields.set(f.name, {
        number: f.number,
        type: FieldDescriptorProto_Type[f.type],
        label: FieldDescriptorProto_Label[f.label],
        typeName: f.typeName ? resolveName(f.typeName, name, known) : '',
        oneof: isFieldSet(f, FieldDescriptorProtoSchema.field.oneofIndex) ? m.oneofDecl[f.oneofIndex]!.name : '',
      });
    types.set(name, { kind: 'message', fields });
  }

  const methods = new Map<string, MethodShape>();
  for (const entry of Object.values(def)) {
    if ('format' in entry) continue;
    for (const m of Object.values(entry as protoLoader.ServiceDefinition)) {
      const [request, response] = methodTypes.get(m.path) ?? ['?', '?'];
      methods.set(m.path, {
        requestType: resolveName(request, '', known),
        responseType: resolveName(response, '', known),
        requestStream: m.requestStream,
        responseStream: m.responseStream,
      });
    }
  }
  return { types, methods };
}

/** Enum value names compared without case or underscores: etcd3 spells NOT_EQUAL as NotEqual. */
const looseName = (name: string) => name.replaceAll('_', '').toLowerCase();

/** Every difference between a reference definition and ours, as one line each. */
function differences(reference: ReturnType<typeof shapesOf>, ours: ReturnType<typeof shapesOf>): string[] {
  const problems: string[] = [];
  for (const [name, ref] of reference.types) {
    const our = ours.types.get(name);
    if (our?.kind !== ref.kind) {
      problems.push(`${name}: ${ref.kind} missing`);
      continue;
    }
    if (ref.kind === 'enum' && our.kind === 'enum') {
      for (const [number, valueName] of ref.values)
        if (looseName(our.values.get(number) ?? '') !== looseName(valueName))
          problems.push(`${name}: value ${number} is ${valueName}, ours ${our.values.get(number)}`);
    } else if (ref.kind === 'message' && our.kind === 'message') {
      for (const [fieldName, field] of ref.fields)
        assertSameField(problems, `${name}.${fieldName}`, field, our.fields.get(fieldName));
    }
  }
  for (const [path, ref] of reference.methods) {
    const our = ours.methods.get(path);
    if (!our) problems.push(`${path}: method missing`);
    else if (JSON.stringify(our) !== JSON.stringify(ref))
      problems.push(`${path}: ${JSON.stringify(ref)}, ours ${JSON.stringify(our)}`);
  }
  return problems;
}

function assertSameField(problems: string[], where: string, ref: FieldShape, our: FieldShape | undefined): void {
  if (!our) problems.push(`${where}: field missing`);
  else
    for (const key of Object.keys(ref) as (keyof FieldShape)[])
      if (our[key] !== ref[key]) problems.push(`${where}: ${key} ${ref[key]}, ours ${our[key]}`);
}

describe('proto/etcd is wire-compatible with the etcd3 client', () => {
  const etcd3 = shapesOf(loadEtcd3());
  const ours = shapesOf(loadOurs());

  it('compares a full API: every etcd3 service is there, with its messages and enums', () => {
    const services = new Set([...etcd3.methods.keys()].map((path) => path.split('/')[1]));
    assert.deepEqual(
      [...services].sort(),
      ['KV', 'Watch', 'Lease', 'Cluster', 'Maintenance', 'Auth'].map((s) => `etcdserverpb.${s}`).sort(),
    );
    assert.ok(etcd3.types.size >= 100, `only ${etcd3.types.size} types loaded from etcd3`);
    assert.ok(etcd3.types.has('mvccpb.KeyValue') && etcd3.types.has('authpb.Permission.Type'));
    const names = (shapes: typeof ours) => [
      ...[...shapes.types.values()]
        .flatMap((t) => (t.kind === 'message' ? [...t.fields.values()] : []))
        .map((f) => f.typeName),
      ...[...shapes.methods.values()].flatMap((m) => [m.requestType, m.responseType]),
    ];
    const unresolved = [...names(etcd3), ...names(ours)].filter((n) => n.startsWith('unresolved:'));
    assert.deepEqual(unresolved, []);
  });

  it('every message and enum etcd3 uses has the same field numbers, types, labels and oneofs', () => {
    assert.deepEqual(differences(etcd3, ours), []);
  });

  it('a changed field number is a difference (the comparison can fail)', () => {
    const changed = structuredClone(ours);
    const put = changed.types.get('etcdserverpb.PutRequest');
    assert.ok(put?.kind === 'message');
    put.fields.get('lease')!.number = 7;
    const found = differences(etcd3, changed);
    assert.ok(found.includes('etcdserverpb.PutRequest.lease: number 3, ours 7'), found.join('\n'));
  });

  it('the grpc-js definitions have exactly the proto services: same paths and streaming', () => {
    const defined = new Map<string, MethodShape>();
    for (const service of Object.values(EtcdDefinitions))
      for (const m of Object.values(service)) {
        const proto = ours.methods.get(m.path);
        assert.ok(proto, `${m.path} is not in proto/etcd`);
        defined.set(m.path, { ...proto, requestStream: m.requestStream, responseStream: m.responseStream });
      }
    assert.deepEqual(defined, ours.methods);
    assert.equal(EtcdDefinitions.KV.range.path, '/etcdserverpb.KV/Range');
  });
});

describe('messages cross between the etcd3 codecs and buffdb', () => {
  const etcd3 = loadEtcd3();
  const etcd3Method = (service: string, name: string) =>
    (etcd3[`etcdserverpb.${service}`] as protoLoader.ServiceDefinition)[name]!;
  const big = 2n ** 63n - 1n;

  it('a Txn request from etcd3 (compare oneof, range_end 64, nested ops) decodes in buffdb', () => {
    const bytes = etcd3Method('KV', 'Txn').requestSerialize({
      compare: [
        { result: 'Less', target: 'Mod', key: Buffer.from('a'), mod_revision: '7', range_end: Buffer.from('b') },
        { result: 'NotEqual', target: 'Lease', key: Buffer.from('c'), lease: big.toString() },
      ],
      success: [{ request_put: { key: Buffer.from('k'), value: Buffer.from('v'), prev_kv: true } }],
      failure: [{ request_range: { key: Buffer.from('k'), sort_order: 'Descend', sort_target: 'Mod', limit: '2' } }],
    });
    const txn = EtcdDefinitions.KV.txn.requestDeserialize(bytes);
    assert.ok(!(txn instanceof DecodeFailure), String(txn));
    assert.deepEqual(
      txn.compare.map((c) => [c.result, c.target, c.key.toString(), c.modRevision, c.lease, c.rangeEnd.toString()]),
      [
        [pb.Compare_CompareResult.LESS, pb.Compare_CompareTarget.MOD, 'a', 7n, undefined, 'b'],
        [pb.Compare_CompareResult.NOT_EQUAL, pb.Compare_CompareTarget.LEASE, 'c', undefined, big, ''],
      ],
    );
    const put = txn.success[0]?.requestPut;
    assert.deepEqual([put?.key.toString(), put?.value.toString(), put?.prevKv], ['k', 'v', true]);
    const range = txn.failure[0]?.requestRange;
    assert.deepEqual(
      [range?.sortOrder, range?.sortTarget, range?.limit],
      [pb.RangeRequest_SortOrder.DESCEND, pb.RangeRequest_SortTarget.MOD, 2n],
    );
  });

  it('a Watch response from buffdb (events, prev_kv, control fields) decodes in etcd3', () => {
    const kv = { key: Buffer.from('k'), createRevision: 3n, modRevision: 9n, version: 2n, value: Buffer.alloc(0) };
    const bytes = EtcdDefinitions.Watch.watch.responseSerialize(
      pb.WatchResponse.fromPartial({
        header: { clusterId: big, memberId: 2n, revision: 9n, raftTerm: 1n },
        watchId: 4n,
        compactRevision: 5n,
        cancelReason: 'why',
        fragment: true,
        events: [
          { type: Event_EventType.DELETE, kv: { ...kv, lease: big }, prevKv: { ...kv, value: Buffer.from('v') } },
        ],
      }),
    );
    const res = etcd3Method('Watch', 'Watch').responseDeserialize(bytes) as Record<string, unknown>;
    assert.deepEqual(res.header, { cluster_id: big.toString(), member_id: '2', revision: '9', raft_term: '1' });
    assert.deepEqual(
      [res.watch_id, res.created, res.canceled, res.compact_revision, res.cancel_reason, res.fragment],
      ['4', false, false, '5', 'why', true],
    );
    const [event] = res.events as { type: string; kv: Record<string, unknown>; prev_kv: Record<string, unknown> }[];
    assert.equal(event?.type, 'Delete');
    assert.deepEqual(
      [event?.kv.key, event?.kv.mod_revision, event?.kv.lease, event?.prev_kv.value],
      [Buffer.from('k'), '9', big.toString(), Buffer.from('v')],
    );
  });

  it('Lease keep-alive both ways, with 64-bit ids', () => {
    const req = EtcdDefinitions.Lease.leaseKeepAlive.requestDeserialize(
      etcd3Method('Lease', 'LeaseKeepAlive').requestSerialize({ ID: big.toString() }),
    );
    assert.deepEqual(req, { ID: big });
    const res = etcd3Method('Lease', 'LeaseKeepAlive').responseDeserialize(
      EtcdDefinitions.Lease.leaseKeepAlive.responseSerialize({ header: undefined, ID: big, TTL: 60n }),
    );
    assert.deepEqual(res, { header: null, ID: big.toString(), TTL: '60' });
  });
});
