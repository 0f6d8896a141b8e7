/**
 * Fuzzes the gRPC surface of `buffdb run` (a child process, loopback only):
 *  - random and mutated protobuf payloads sent as raw bytes to every method, wrong wire types,
 *    invalid UTF-8 in string fields, unknown enum values, huge inner length prefixes;
 *  - raw HTTP/2: truncated frames, huge gRPC length prefixes, the compressed flag, bad headers;
 *  - oversize messages, cancelled streams, half-closed streams, streams opened and abandoned;
 *  - the etcd services too (./fuzz-etcd.ts): an etcd Watch stream stays open until the client
 *    ends it, as etcd's does, so a watch case ends at a short deadline with no error.
 * The server must never crash or hang; every request ends with a status from the allowed set and,
 * when it is not OK, a message a person can act on. Afterwards a normal request must still work.
 *
 *   npm run fuzz -- [--cases 20000] [--seed N] [--abandon 5000] [--corpus test/fuzz-corpus]
 *   npm run fuzz -- --write-corpus test/fuzz-corpus     (regenerates the seed corpus)
 *   TLS and auth: --tls-cert F --tls-key F --tls-ca F --auth-file F --token T (scripts/connection.ts)
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http2 from 'node:http2';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { Client, type ServiceError, status } from '@grpc/grpc-js';
import { loadBackend } from '../src/backends/index.js';
import * as blob from '../src/generated/blob.js';
import * as kv from '../src/generated/kv.js';
import * as query from '../src/generated/query.js';
import { CONNECTION_ARGS, type Connection, connection, PLAIN } from './connection.js';
import { ETCD_METHODS, etcdStrictCases } from './fuzz-etcd.js';

const CLI = resolve(import.meta.dirname, '..', 'dist', 'cli', 'main.js');
/** The fuzz server's --max-message-size: small, so oversize messages are cheap to send. */
export const FUZZ_MAX_MESSAGE = 1024 * 1024;
/** The fuzz server's --etcd-max-request-bytes: below the message limit, so etcd's own check answers. */
export const FUZZ_ETCD_MAX_REQUEST = 64 * 1024;
/** How long a watch case waits for a status before ending the (still open) stream itself. */
const WATCH_MS = 500;

type Kind = 'bidi' | 'client' | 'server' | 'unary' | 'watch';
export interface MethodSpec {
  path: string;
  kind: Kind;
  seeds: Uint8Array[];
}

const enc = <T>(codec: { encode(m: T): { finish(): Uint8Array } }, ...msgs: T[]): Uint8Array[] =>
  msgs.map((m) => codec.encode(m).finish());

/** Every buffdb RPC, with valid requests to mutate. SQL seeds only read (mutations must not write havoc). */
const BUFFDB_METHODS: MethodSpec[] = [
  {
    path: '/buffdb.kv.Kv/Get',
    kind: 'bidi',
    seeds: enc(kv.GetRequest, { key: 'fuzz-a' }, { key: 'fuzz-missing', transactionId: 'nope' }),
  },
  {
    path: '/buffdb.kv.Kv/Set',
    kind: 'bidi',
    seeds: enc(kv.SetRequest, { key: 'fuzz-a', value: 'value-a' }, { key: 'fuzz-ü', value: '✓' }),
  },
  { path: '/buffdb.kv.Kv/Delete', kind: 'bidi', seeds: enc(kv.DeleteRequest, { key: 'fuzz-gone' }) },
  { path: '/buffdb.kv.Kv/Eq', kind: 'client', seeds: enc(kv.EqRequest, { key: 'fuzz-a' }) },
  { path: '/buffdb.kv.Kv/NotEq', kind: 'client', seeds: enc(kv.NotEqRequest, { key: 'fuzz-a' }) },
  {
    path: '/buffdb.kv.Kv/BeginTransaction',
    kind: 'unary',
    seeds: enc(kv.BeginTransactionRequest, { readOnly: true, timeoutMs: 1000 }),
  },
  {
    path: '/buffdb.kv.Kv/CommitTransaction',
    kind: 'unary',
    seeds: enc(kv.CommitTransactionRequest, { transactionId: 'fuzz-tx' }),
  },
  {
    path: '/buffdb.kv.Kv/RollbackTransaction',
    kind: 'unary',
    seeds: enc(kv.RollbackTransactionRequest, { transactionId: 'fuzz-tx' }),
  },
  { path: '/buffdb.blob.Blob/Get', kind: 'bidi', seeds: enc(blob.GetRequest, { id: 1n }) },
  {
    path: '/buffdb.blob.Blob/Store',
    kind: 'bidi',
    seeds: enc(blob.StoreRequest, { bytes: Buffer.from('blob data'), metadata: 'meta' }),
  },
  {
    path: '/buffdb.blob.Blob/Update',
    kind: 'bidi',
    seeds: enc(blob.UpdateRequest, { id: 1n, bytes: Buffer.from('new'), shouldUpdateMetadata: true, metadata: 'm2' }),
  },
  { path: '/buffdb.blob.Blob/Delete', kind: 'bidi', seeds: enc(blob.DeleteRequest, { id: 999999n }) },
  { path: '/buffdb.blob.Blob/EqData', kind: 'client', seeds: enc(blob.EqDataRequest, { id: 1n }) },
  { path: '/buffdb.blob.Blob/NotEqData', kind: 'client', seeds: enc(blob.NotEqDataRequest, { id: 1n }) },
  {
    path: '/buffdb.blob.Blob/Upload',
    kind: 'client',
    seeds: enc(
      blob.UploadRequest,
      { header: { metadata: 'up', offset: 0n, shouldUpdateMetadata: false } },
      { chunk: Buffer.from('upload data') },
      { header: { uploadId: 'fuzz-up', size: 11n, offset: 0n, shouldUpdateMetadata: false } },
      { header: { id: 1n, sha256: Buffer.alloc(32, 7), offset: 0n, shouldUpdateMetadata: true } },
    ),
  },
  {
    path: '/buffdb.blob.Blob/UploadStatus',
    kind: 'unary',
    seeds: enc(blob.UploadStatusRequest, { uploadId: 'fuzz-up' }),
  },
  {
    path: '/buffdb.blob.Blob/Download',
    kind: 'server',
    seeds: enc(
      blob.DownloadRequest,
      { id: 1n, offset: 0n, chunkSize: 0 },
      { id: 1n, offset: 2n, length: 3n, chunkSize: 1 },
      { id: 1n, offset: 1n << 60n, chunkSize: 1 << 30 },
    ),
  },
  {
    path: '/buffdb.query.Query/Query',
    kind: 'bidi',
    seeds: enc(
      query.RawQuery,
      { query: 'SELECT key, value FROM kv LIMIT 3', target: query.TargetStore.KV },
      { query: 'SELECT id, length(data) FROM blob LIMIT 3', target: query.TargetStore.BLOB },
    ),
  },
  {
    path: '/buffdb.query.Query/Execute',
    kind: 'bidi',
    seeds: enc(query.RawQuery, { query: "SELECT count(*) FROM kv WHERE key = 'fuzz'", target: query.TargetStore.KV }),
  },
];

/** Every RPC served: buffdb's and etcd's. */
export const METHODS: MethodSpec[] = [...BUFFDB_METHODS, ...ETCD_METHODS];

/** Statuses a bad request may end with. INTERNAL, UNKNOWN, UNAVAILABLE or a timeout are failures. */
export const ALLOWED = new Set<number>([
  status.OK,
  status.INVALID_ARGUMENT,
  status.NOT_FOUND,
  status.ALREADY_EXISTS,
  status.PERMISSION_DENIED,
  status.RESOURCE_EXHAUSTED,
  status.FAILED_PRECONDITION,
  status.ABORTED,
  status.OUT_OF_RANGE,
  status.UNIMPLEMENTED,
  // An Upload whose data does not hash to the sha256 it declared.
  status.DATA_LOSS,
]);

export interface FuzzCase {
  name?: string;
  method: string;
  payloads: string[];
  expect?: number[];
}
export interface Outcome {
  code: number;
  details: string;
  responses: number;
}

export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const varint = (n: number | bigint): number[] => {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
};
const tag = (field: number, wire: number): number[] => varint((field << 3) | wire);

/** Hand-made malformed messages: wrong wire types, bad UTF-8, bad enums, huge inner lengths. */
export function craftedPayloads(): Uint8Array[] {
  const bytes = (...parts: number[][]): Uint8Array => Uint8Array.from(parts.flat());
  return [
    bytes(tag(1, 0), varint(5)), // string field as varint
    bytes(tag(1, 1), [1, 2, 3, 4, 5, 6, 7, 8]), // as fixed64
    bytes(tag(1, 5), [1, 2, 3, 4]), // as fixed32
    bytes(tag(1, 3), tag(1, 4)), // start/end group
    bytes(tag(1, 3)), // unterminated group
    bytes(tag(1, 6), [0]), // wire type 6 does not exist
    bytes(tag(1, 7), [0]), // wire type 7 does not exist
    bytes(tag(1, 2), [2, 0xff, 0xfe]), // invalid UTF-8
    bytes(tag(1, 2), [3, 0xed, 0xa0, 0x80]), // UTF-8-encoded surrogate
    bytes(tag(1, 2), [2, 0xc0, 0x80]), // overlong NUL
    bytes(tag(1, 2), [1, 0x80]), // lone continuation byte
    bytes(tag(2, 2), [2, 0xff, 0xff]), // invalid UTF-8 in field 2
    bytes(tag(4, 2), [1, 0xff]), // invalid UTF-8 in field 4 (blob metadata)
    bytes(tag(1, 2), varint(2 ** 31)), // length far beyond the message
    bytes(tag(1, 2), varint(2n ** 63n)), // 64-bit length
    bytes(tag(1, 2), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), // 11-byte varint
    bytes(tag(1, 0), [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]), // unterminated varint
    bytes(tag(1, 0), varint(2n ** 64n - 1n)), // max uint64 id
    bytes([0]), // field number 0
    bytes(varint(((2 ** 29) << 3) >>> 0)), // field number beyond 2^29
    bytes(tag(2, 0), varint(7)), // enum value 7 (RawQuery.target)
    bytes(tag(2, 0), varint(2n ** 64n - 1n)), // enum -1
    bytes(tag(1, 2), [6], Array.from(Buffer.from('SELECT')), tag(2, 0), [99]), // query with target 99
    bytes(tag(1, 2), [0], tag(1, 2), [1, 0x41]), // repeated scalar field
    bytes(tag(1000, 2), [1, 0]), // unknown field
    bytes(tag(3, 0), varint(2)), // bool = 2
    bytes(tag(2, 0), varint(2n ** 63n)), // int32 timeout overflow
  ];
}

/** A random mutation of `input`: bit flips, truncation, insertion, duplication, splicing. */
export function mutate(rand: () => number, input: Uint8Array): Uint8Array {
  const b = [...input];
  const n = 1 + Math.floor(rand() * 4);
  for (let k = 0; k < n; k++) {
    const op = Math.floor(rand() * 7);
    const at = Math.floor(rand() * (b.length + 1));
    if (op === 0 && b.length > 0) b[at % b.length]! ^= 1 << Math.floor(rand() * 8);
    else if (op === 1) b.length = at;
    else if (op === 2) b.splice(at, 0, Math.floor(rand() * 256));
    else if (op === 3) b.splice(at, 0, ...b.slice(0, Math.floor(rand() * 8)));
    else if (op === 4 && b.length > 0) b[at % b.length] = [0, 0x7f, 0x80, 0xff][Math.floor(rand() * 4)]!;
    else if (op === 5)
      b.splice(at, 0, ...[0xc3, 0x28, 0xa0, 0xa1, 0xe2, 0x28, 0xa1].slice(0, 1 + Math.floor(rand() * 6)));
    else b.splice(at, 0, ...varint(Math.floor(rand() * 2 ** 32)));
  }
  return Uint8Array.from(b);
}

/** `count` cases: mutated seeds, crafted payloads, random bytes; several messages per stream. */
export function generateCases(rand: () => number, count: number, methods = METHODS): FuzzCase[] {
  const crafted = craftedPayloads();
  const cases: FuzzCase[] = [];
  for (let i = 0; i < count; i++) {
    const m = methods[Math.floor(rand() * methods.length)]!;
    const nMsgs = m.kind === 'unary' || m.kind === 'server' ? 1 : 1 + Math.floor(rand() * 3);
    const payloads: string[] = [];
    for (let j = 0; j < nMsgs; j++) {
      const r = rand();
      let p: Uint8Array;
      if (r < 0.5) p = mutate(rand, m.seeds[Math.floor(rand() * m.seeds.length)]!);
      else if (r < 0.75) p = crafted[Math.floor(rand() * crafted.length)]!;
      else if (r < 0.9) p = Uint8Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256));
      else p = m.seeds[Math.floor(rand() * m.seeds.length)]!;
      payloads.push(Buffer.from(p).toString('hex'));
    }
    cases.push({ method: m.path, payloads });
  }
  return cases;
}

const identity = (b: Buffer): Buffer => b;

/** Sends raw message bytes to `method` and waits for the status (bounded by a deadline). */
export function sendRaw(
  client: Client,
  method: string,
  payloads: Buffer[],
  deadlineMs = 10_000,
  conn: Connection = PLAIN,
): Promise<Outcome> {
  const spec = METHODS.find((m) => m.path === method);
  const kind: Kind = spec?.kind ?? 'bidi';
  const deadline = Date.now() + (kind === 'watch' ? WATCH_MS : deadlineMs);
  return new Promise((resolvePromise) => {
    let responses = 0;
    const done = (err: ServiceError | null): void => {
      // A watch stream the server kept open (as etcd does) is ended by the deadline: that is no error.
      const open = kind === 'watch' && err?.code === status.DEADLINE_EXCEEDED;
      resolvePromise(
        err && !open
          ? { code: err.code, details: err.details, responses }
          : { code: status.OK, details: '', responses },
      );
    };
    /** Counts a stream's answers until its status. */
    const listen = (call: NodeJS.EventEmitter): void => {
      call.on('data', () => {
        responses++;
      });
      call.on('error', (err: ServiceError) => done(err));
      call.on('end', () => done(null));
    };
    if (kind === 'unary') {
      client.makeUnaryRequest(
        method,
        identity,
        identity,
        payloads[0] ?? Buffer.alloc(0),
        conn.metadata(),
        { deadline },
        (err) => {
          if (!err) responses++;
          done(err);
        },
      );
    } else if (kind === 'server') {
      const first = payloads[0] ?? Buffer.alloc(0);
      listen(client.makeServerStreamRequest(method, identity, identity, first, conn.metadata(), { deadline }));
    } else if (kind === 'client') {
      const call = client.makeClientStreamRequest(method, identity, identity, conn.metadata(), { deadline }, (err) => {
        if (!err) responses++;
        done(err);
      });
      call.on('error', () => {});
      for (const p of payloads) call.write(p);
      call.end();
    } else {
      const call = client.makeBidiStreamRequest(method, identity, identity, conn.metadata(), { deadline });
      listen(call);
      for (const p of payloads) call.write(p);
      call.end();
    }
  });
}

/** What is wrong with an outcome, or undefined if it is acceptable. */
export function judge(c: FuzzCase, o: Outcome, rawSql = true): string | undefined {
  const expect = c.expect ? new Set(c.expect) : ALLOWED;
  // Backends without raw SQL answer every Query call UNIMPLEMENTED (once the message decodes).
  if (!rawSql && c.method.startsWith('/buffdb.query.') && o.code === status.UNIMPLEMENTED) return undefined;
  if (!expect.has(o.code)) {
    return `${c.name ?? c.method}: status ${status[o.code] ?? o.code} (${o.details}) for ${c.payloads.join(' | ') || '(no message)'}`;
  }
  if (o.code !== status.OK && o.details.trim().length < 12)
    return `${c.name ?? c.method}: unhelpful message ${JSON.stringify(o.details)}`;
  return undefined;
}

export interface ServerProc {
  child: ChildProcess;
  addr: string;
  stderr: () => string;
  exited: Promise<number | null>;
}

export function startFuzzServer(dir: string, extra: string[] = []): Promise<ServerProc> {
  const child = spawn(
    process.execPath,
    [
      CLI,
      'run',
      '127.0.0.1:0',
      '--kv-store',
      join(dir, 'kv.db'),
      '--blob-store',
      join(dir, 'blob.db'),
      '--max-message-size',
      String(FUZZ_MAX_MESSAGE),
      '--etcd-max-request-bytes',
      String(FUZZ_ETCD_MAX_REQUEST),
      ...extra,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((res) => child.on('exit', (code) => res(code)));
  return new Promise((res, rej) => {
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (\S+)/.exec(out);
      if (m) res({ child, addr: m[1]!, stderr: () => err, exited });
    });
    void exited.then((code) => rej(new Error(`server exited (${code}) at start: ${err}`)));
  });
}

/** A gRPC frame: compressed flag, 4-byte big-endian length, body. */
const frame = (flag: number, length: number, body: Uint8Array): Buffer => {
  const b = Buffer.alloc(5 + body.length);
  b[0] = flag;
  b.writeUInt32BE(length >>> 0, 1);
  Buffer.from(body).copy(b, 5);
  return b;
};

export interface H2Result {
  name: string;
  http?: number;
  code?: number;
  details?: string;
  hung?: boolean;
}

/** Raw HTTP/2 requests with broken gRPC framing. Each must end with a status (or an HTTP error), never hang. */
export async function rawHttp2Cases(
  addr: string,
  conn: Connection = PLAIN,
): Promise<{ results: H2Result[]; problems: string[] }> {
  const session = http2.connect(conn.h2Url(addr), conn.h2Options);
  session.on('error', () => {});
  const set = kv.SetRequest.encode({ key: 'h2', value: 'v' }).finish();
  const send = (
    name: string,
    path: string,
    chunks: Buffer[],
    headers: http2.OutgoingHttpHeaders = {},
    how: 'end' | 'rst' | 'open' = 'end',
  ): Promise<H2Result> =>
    new Promise((res) => {
      const s = session.request({
        ':method': 'POST',
        ':path': path,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...conn.h2Headers,
        ...headers,
      });
      let head: http2.IncomingHttpHeaders = {};
      let trailers: http2.IncomingHttpHeaders = {};
      s.on('response', (h) => {
        head = h;
      });
      s.on('trailers', (t) => {
        trailers = t;
      });
      s.on('data', () => {});
      s.on('error', () => {});
      const timer = setTimeout(() => {
        s.close(http2.constants.NGHTTP2_CANCEL);
        res({ name, hung: true });
      }, 10_000);
      s.on('close', () => {
        clearTimeout(timer);
        const code = trailers['grpc-status'] ?? head['grpc-status'];
        const details = trailers['grpc-message'] ?? head['grpc-message'];
        res({
          name,
          http: Number(head[':status']),
          code: code === undefined ? undefined : Number(code),
          details: details === undefined ? undefined : decodeURIComponent(String(details)),
        });
      });
      for (const c of chunks) s.write(c);
      if (how === 'end') s.end();
      else if (how === 'rst') setTimeout(() => s.close(http2.constants.NGHTTP2_CANCEL), 20);
    });
  const kvSet = '/buffdb.kv.Kv/Set';
  const results: H2Result[] = [];
  const problems: string[] = [];
  const expectStatus = (r: H2Result, codes: number[]): void => {
    if (r.hung) problems.push(`${r.name}: no answer within 10 s`);
    else if (r.code === undefined || !codes.includes(r.code))
      problems.push(`${r.name}: status ${r.code} (${r.details})`);
    else if (r.code !== 0 && (r.details ?? '').length < 12) problems.push(`${r.name}: unhelpful message ${r.details}`);
    results.push(r);
  };
  // grpc-js discards a partial message at end of stream unread: nothing is applied, OK with no answer.
  expectStatus(await send('truncated message body', kvSet, [frame(0, 100, set)]), [status.OK]);
  expectStatus(await send('truncated length prefix', kvSet, [Buffer.from([0, 0, 0])]), [status.OK]);
  expectStatus(await send('huge length prefix (4 GiB)', kvSet, [frame(0, 0xffffffff, set)]), [
    status.RESOURCE_EXHAUSTED,
  ]);
  expectStatus(await send('length prefix just over the limit', kvSet, [frame(0, FUZZ_MAX_MESSAGE + 1, set)]), [
    status.RESOURCE_EXHAUSTED,
  ]);
  expectStatus(await send('compressed flag, no grpc-encoding', kvSet, [frame(1, set.length, set)]), [
    status.OK,
    status.INTERNAL,
  ]);
  expectStatus(await send('gzip flag with garbage', kvSet, [frame(1, set.length, set)], { 'grpc-encoding': 'gzip' }), [
    status.INTERNAL,
  ]);
  expectStatus(await send('unknown grpc-encoding', kvSet, [frame(1, set.length, set)], { 'grpc-encoding': 'zstd9' }), [
    status.UNIMPLEMENTED,
  ]);
  expectStatus(await send('reserved flag bits', kvSet, [frame(0x80, set.length, set)]), [status.OK, status.INTERNAL]);
  expectStatus(await send('bad grpc-timeout', kvSet, [frame(0, set.length, set)], { 'grpc-timeout': 'soon' }), [
    status.INTERNAL,
  ]);
  expectStatus(await send('unknown method', '/buffdb.kv.Kv/Nope', [frame(0, set.length, set)]), [status.UNIMPLEMENTED]);
  expectStatus(await send('unknown service', '/buffdb.nope.Nope/Get', []), [status.UNIMPLEMENTED]);
  expectStatus(await send('unary without a message', '/buffdb.kv.Kv/BeginTransaction', []), [
    status.UNIMPLEMENTED,
    status.INVALID_ARGUMENT,
  ]);
  expectStatus(
    await send('unary with two messages', '/buffdb.kv.Kv/BeginTransaction', [
      frame(0, 0, new Uint8Array(0)),
      frame(0, 0, new Uint8Array(0)),
    ]),
    [status.UNIMPLEMENTED, status.INVALID_ARGUMENT],
  );
  expectStatus(
    await send(
      'message split into 1-byte DATA frames',
      kvSet,
      [...frame(0, set.length, set)].map((x) => Buffer.from([x])),
    ),
    [status.OK],
  );
  expectStatus(
    await send('invalid UTF-8 over raw HTTP/2', kvSet, [frame(0, 4, Uint8Array.from([0x0a, 2, 0xff, 0xfe]))]),
    [status.INVALID_ARGUMENT],
  );
  const bad = await send('wrong content-type', kvSet, [frame(0, set.length, set)], { 'content-type': 'text/plain' });
  if (bad.hung || bad.http !== 415) problems.push(`wrong content-type: HTTP ${bad.http}`);
  results.push(bad);
  const rst = await send('reset mid-message', kvSet, [frame(0, 1000, set)], {}, 'rst');
  if (rst.hung) problems.push('reset mid-message: hung');
  results.push(rst);
  session.close();
  return { results, problems };
}

/**
 * Opens `count` streams across a few connections, writes a partial or complete message on some,
 * leaves them all open, then drops the connections without closing the streams.
 */
export async function abandonStreams(addr: string, count: number, conn: Connection = PLAIN): Promise<void> {
  const perConn = 500;
  for (let opened = 0; opened < count; opened += perConn) {
    const session = http2.connect(conn.h2Url(addr), conn.h2Options);
    session.on('error', () => {});
    await new Promise<void>((res) => session.once('connect', () => res()));
    const n = Math.min(perConn, count - opened);
    for (let i = 0; i < n; i++) {
      const s = session.request({
        ':method': 'POST',
        ':path': METHODS[i % METHODS.length]!.path,
        'content-type': 'application/grpc',
        te: 'trailers',
        ...conn.h2Headers,
      });
      s.on('error', () => {});
      s.on('data', () => {});
      const body = METHODS[i % METHODS.length]!.seeds[0]!;
      if (i % 3 === 0) s.write(frame(0, body.length, body));
      else if (i % 3 === 1) s.write(frame(0, body.length + 50, body));
    }
    await new Promise((r) => setTimeout(r, 50));
    session.destroy();
  }
  // And through grpc-js: cancelled streams and half-closed streams whose answers are never read.
  const client = new Client(addr, conn.credentials);
  for (let i = 0; i < Math.min(count, 500); i++) {
    const call = client.makeBidiStreamRequest('/buffdb.kv.Kv/Set', identity, identity, conn.metadata());
    call.on('error', () => {});
    call.write(Buffer.from(kv.SetRequest.encode({ key: `abandon-${i % 10}`, value: 'v' }).finish()));
    if (i % 2 === 0) call.cancel();
    else call.end();
  }
  await new Promise((r) => setTimeout(r, 100));
  client.close();
}

/** A normal request round-trip: the server is alive and correct. */
export async function healthy(addr: string, conn: Connection = PLAIN): Promise<void> {
  const client = new Client(addr, conn.credentials);
  try {
    const key = `health-${Date.now()}`;
    const set = await sendRaw(
      client,
      '/buffdb.kv.Kv/Set',
      [Buffer.from(kv.SetRequest.encode({ key, value: 'ok' }).finish())],
      10_000,
      conn,
    );
    if (set.code !== status.OK || set.responses !== 1) throw new Error(`Set after fuzzing: ${set.code} ${set.details}`);
    const values: string[] = [];
    await new Promise<void>((res, rej) => {
      const call = client.makeBidiStreamRequest('/buffdb.kv.Kv/Get', identity, identity, conn.metadata(), {
        deadline: Date.now() + 10_000,
      });
      call.on('data', (b: Buffer) => values.push(kv.GetResponse.decode(b).value));
      call.on('error', rej);
      call.on('end', () => res());
      call.write(Buffer.from(kv.GetRequest.encode({ key }).finish()));
      call.end();
    });
    if (values[0] !== 'ok') throw new Error(`Get after fuzzing answered ${JSON.stringify(values)}`);
  } finally {
    client.close();
  }
}

export function loadCorpus(dir: string): FuzzCase[] {
  return readdirSync(dir)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .flatMap((f) =>
      (JSON.parse(readFileSync(join(dir, f), 'utf8')) as FuzzCase[]).map((c) => ({ ...c, name: c.name ?? f })),
    );
}

/** Upload / Download messages in the wrong order or out of range: each has one right answer. */
function uploadStrictCases(hex: (b: Uint8Array) => string): FuzzCase[] {
  const up = (m: blob.UploadRequest): string => hex(blob.UploadRequest.encode(m).finish());
  const header = (h: Partial<blob.UploadHeader> = {}): blob.UploadRequest => ({
    header: { offset: 0n, shouldUpdateMetadata: false, ...h },
  });
  const chunk = up({ chunk: Buffer.from('x') });
  const down = (r: Partial<blob.DownloadRequest>): string =>
    hex(blob.DownloadRequest.encode({ id: 1n, offset: 0n, chunkSize: 0, ...r }).finish());
  const cases: [string, string, string[], number | number[]][] = [
    ['Upload chunk before the header', 'Upload', [chunk, up(header())], status.INVALID_ARGUMENT],
    ['Upload two headers', 'Upload', [up(header()), chunk, up(header())], status.INVALID_ARGUMENT],
    ['Upload no message', 'Upload', [], status.INVALID_ARGUMENT],
    ['Upload empty message', 'Upload', [''], status.INVALID_ARGUMENT],
    ['Upload sha256 of 3 bytes', 'Upload', [up(header({ sha256: Buffer.alloc(3) }))], status.INVALID_ARGUMENT],
    [
      'Upload upload_id of 129 characters',
      'Upload',
      [up(header({ uploadId: 'u'.repeat(129) }))],
      status.INVALID_ARGUMENT,
    ],
    ['Upload more than the declared size', 'Upload', [up(header({ size: 0n })), chunk], status.INVALID_ARGUMENT],
    ['Upload wrong sha256', 'Upload', [up(header({ sha256: Buffer.alloc(32) })), chunk], status.DATA_LOSS],
    ['Upload to a missing id', 'Upload', [up(header({ id: 1n << 62n })), chunk], status.NOT_FOUND],
    [
      'Upload resumable at a wrong offset',
      'Upload',
      [up(header({ uploadId: 'fuzz-new', offset: 5n }))],
      status.OUT_OF_RANGE,
    ],
    ['UploadStatus invalid UTF-8', 'UploadStatus', ['0a01ff'], status.INVALID_ARGUMENT],
    ['Download a missing id', 'Download', [down({ id: 1n << 62n })], status.NOT_FOUND],
    // Blob 1 may not exist (NOT_FOUND comes first); if it does, the offset is refused.
    [
      'Download offset beyond 2^53',
      'Download',
      [down({ offset: 1n << 60n })],
      [status.INVALID_ARGUMENT, status.NOT_FOUND],
    ],
  ];
  return cases.map(([name, method, payloads, code]) => ({
    name,
    method: `/buffdb.blob.Blob/${method}`,
    payloads,
    expect: typeof code === 'number' ? [code] : code,
  }));
}

/** The seed corpus: crafted payloads against every method, oversize messages, and a few mutations. */
export function buildCorpus(): Record<string, FuzzCase[]> {
  const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
  const crafted = craftedPayloads();
  const craftedFor = (methods: MethodSpec[]): FuzzCase[] =>
    methods.flatMap((m) =>
      crafted.map((p, i) => ({ name: `${m.path} crafted#${i}`, method: m.path, payloads: [hex(p)] })),
    );
  const malformed = craftedFor(BUFFDB_METHODS);
  const strict: FuzzCase[] = [
    {
      name: 'Kv.Set invalid UTF-8 key',
      method: '/buffdb.kv.Kv/Set',
      payloads: ['0a02fffe1201 61'.replace(/ /g, '')],
      expect: [status.INVALID_ARGUMENT],
    },
    {
      name: 'Kv.Set invalid UTF-8 value',
      method: '/buffdb.kv.Kv/Set',
      payloads: ['0a01611202c328'],
      expect: [status.INVALID_ARGUMENT],
    },
    {
      name: 'Kv.Get invalid UTF-8 key after a valid one',
      method: '/buffdb.kv.Kv/Get',
      payloads: [hex(kv.GetRequest.encode({ key: 'fuzz-a' }).finish()), '0a0180'],
      expect: [status.INVALID_ARGUMENT, status.NOT_FOUND],
    },
    {
      name: 'Blob.Store invalid UTF-8 metadata',
      method: '/buffdb.blob.Blob/Store',
      payloads: ['0a01001201ff'],
      expect: [status.INVALID_ARGUMENT],
    },
    {
      name: 'Query unknown target 7',
      method: '/buffdb.query.Query/Query',
      payloads: ['0a0853454c45435420311007'],
      expect: [status.INVALID_ARGUMENT],
    },
    {
      name: 'Execute unknown target 7',
      method: '/buffdb.query.Query/Execute',
      payloads: ['0a0853454c45435420311007'],
      expect: [status.INVALID_ARGUMENT],
    },
    // A known field with the wrong wire type is skipped as an unknown field (as protobuf's own
    // parsers do): here that leaves the query empty, and an empty query is INVALID_ARGUMENT.
    {
      name: 'Query string field sent as varint',
      method: '/buffdb.query.Query/Query',
      payloads: ['0805'],
      expect: [status.INVALID_ARGUMENT],
    },
    {
      name: 'Kv.Set length beyond the message',
      method: '/buffdb.kv.Kv/Set',
      payloads: ['0a8080808008'],
      expect: [status.INVALID_ARGUMENT],
    },
    {
      name: 'Kv.Eq invalid UTF-8',
      method: '/buffdb.kv.Kv/Eq',
      payloads: ['0a01ff'],
      expect: [status.INVALID_ARGUMENT],
    },
    {
      name: 'Blob.Get wrong wire type (skipped: id 0)',
      method: '/buffdb.blob.Blob/Get',
      payloads: ['0a0101'],
      expect: [status.NOT_FOUND],
    },
    {
      name: 'Kv.Set oversize inner length, valid frame',
      method: '/buffdb.kv.Kv/Set',
      payloads: ['0affffffff0f'],
      expect: [status.INVALID_ARGUMENT],
    },
    { name: 'Kv.Get empty message (key "")', method: '/buffdb.kv.Kv/Get', payloads: [''], expect: [status.NOT_FOUND] },
    ...uploadStrictCases(hex),
    // Found by `npm run fuzz` (seed 6): a NUL in the SQL text answered INTERNAL.
    {
      name: 'Execute SQL with a NUL byte',
      method: '/buffdb.query.Query/Execute',
      payloads: ['0a2a00454c45435420636f756e74282a292046524f4d206b76005748457f45206b6579203d202766757a7a27'],
      expect: [status.INVALID_ARGUMENT],
    },
    {
      name: 'Query SQL with a NUL byte',
      method: '/buffdb.query.Query/Query',
      payloads: [
        hex(query.RawQuery.encode({ query: "SELECT 1\0; ATTACH 'x' AS y", target: query.TargetStore.KV }).finish()),
      ],
      expect: [status.INVALID_ARGUMENT],
    },
    // Found by `npm run fuzz` (seed 8): SQL with a parameter ($value, ?, :x) answered INTERNAL.
    {
      name: 'Query with a named parameter',
      method: '/buffdb.query.Query/Query',
      payloads: ['0a2153454c454354206b65792c2476616c75652046524f4d206b76204c494d49542033'],
      expect: [status.INVALID_ARGUMENT],
    },
    {
      name: 'Execute with a positional parameter',
      method: '/buffdb.query.Query/Execute',
      payloads: [
        hex(
          query.RawQuery.encode({
            // The blob table: every SQL backend lets raw SQL write it (not so kv).
            query: 'UPDATE blob SET metadata = ? WHERE id = ?',
            target: query.TargetStore.BLOB,
          }).finish(),
        ),
      ],
      // Backends that refuse raw SQL writes to kv (capability sqlKvWrites) say so first.
      expect: [status.INVALID_ARGUMENT, status.PERMISSION_DENIED],
    },
    {
      name: 'Query refused ATTACH',
      method: '/buffdb.query.Query/Execute',
      payloads: [hex(query.RawQuery.encode({ query: "ATTACH 'x' AS y", target: query.TargetStore.KV }).finish())],
      expect: [status.PERMISSION_DENIED],
    },
  ];
  const rand = rng(20261124);
  const mutated = generateCases(rand, 120, BUFFDB_METHODS).map((c, i) => ({ ...c, name: `mutated#${i} ${c.method}` }));
  const etcdMutated = generateCases(rng(20261128), 80, ETCD_METHODS).map((c, i) => ({
    ...c,
    name: `etcd mutated#${i} ${c.method}`,
  }));
  return {
    '01-malformed.json': malformed,
    '02-strict.json': strict,
    '03-mutated.json': mutated,
    '04-etcd.json': [...etcdStrictCases(), ...craftedFor(ETCD_METHODS), ...etcdMutated],
  };
}

export interface FuzzStats {
  cases: number;
  problems: string[];
  h2: number;
  abandoned: number;
  oversize: number;
  seconds: number;
  rssMiB: number;
}

/** Runs corpus cases, then `random` generated cases, raw HTTP/2 cases, oversize and abandoned streams. */
export async function runFuzz(
  addr: string,
  corpus: FuzzCase[],
  random: number,
  seed: number,
  abandon: number,
  log: (l: string) => void = () => {},
  rawSql = true,
  conn: Connection = PLAIN,
): Promise<FuzzStats> {
  const started = Date.now();
  const problems: string[] = [];
  const client = new Client(addr, conn.credentials, {
    'grpc.max_send_message_length': -1,
    'grpc.max_receive_message_length': -1,
  });
  let cases = 0;
  const all = [...corpus, ...generateCases(rng(seed), random)];
  // A few streams at a time: enough concurrency to interleave, little load.
  const width = 8;
  for (let i = 0; i < all.length; i += width) {
    await Promise.all(
      all.slice(i, i + width).map(async (c) => {
        const o = await sendRaw(
          client,
          c.method,
          c.payloads.map((p) => Buffer.from(p, 'hex')),
          10_000,
          conn,
        );
        cases++;
        const problem = judge(c, o, rawSql);
        if (problem) problems.push(problem);
      }),
    );
    if (cases % 5000 < width) log(`  ${cases}/${all.length} cases, ${problems.length} problems`);
  }
  // Oversize messages: just over the server's limit, on a bidi, a client-stream and a unary method.
  let oversize = 0;
  for (const method of ['/buffdb.blob.Blob/Store', '/buffdb.kv.Kv/Eq', '/buffdb.kv.Kv/BeginTransaction']) {
    const big = Buffer.concat([
      Buffer.from([0x0a, ...varint(FUZZ_MAX_MESSAGE + 10)]),
      Buffer.alloc(FUZZ_MAX_MESSAGE + 10, 0x41),
    ]);
    const o = await sendRaw(client, method, [big], 10_000, conn);
    oversize++;
    const problem = judge(
      { name: `oversize ${method}`, method, payloads: ['<1 MiB + 10>'], expect: [status.RESOURCE_EXHAUSTED] },
      o,
    );
    if (problem) problems.push(problem);
  }
  // An etcd write over --etcd-max-request-bytes but within the message limit: etcd's own answer.
  const bigPut = Buffer.concat([
    Buffer.from([0x0a, 1, 0x6b, 0x12, ...varint(FUZZ_ETCD_MAX_REQUEST + 10)]),
    Buffer.alloc(FUZZ_ETCD_MAX_REQUEST + 10, 0x41),
  ]);
  const tooLarge = await sendRaw(client, '/etcdserverpb.KV/Put', [bigPut]);
  oversize++;
  if (tooLarge.code !== status.INVALID_ARGUMENT || tooLarge.details !== 'etcdserver: request is too large') {
    problems.push(`etcd Put over max-request-bytes: ${tooLarge.code} ${tooLarge.details}`);
  }
  client.close();
  const h2 = await rawHttp2Cases(addr, conn);
  problems.push(...h2.problems);
  await abandonStreams(addr, abandon, conn);
  try {
    await healthy(addr, conn);
  } catch (err) {
    problems.push(`after fuzzing: ${(err as Error).message}`);
  }
  return {
    cases,
    problems,
    h2: h2.results.length,
    abandoned: abandon,
    oversize,
    seconds: (Date.now() - started) / 1000,
    rssMiB: 0,
  };
}

/** Resident set size of a process, from /proc (Linux), in MiB; 0 where unavailable. */
export function rssOf(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      cases: { type: 'string', default: '20000' },
      backend: { type: 'string', default: 'sqlite' },
      seed: { type: 'string' },
      abandon: { type: 'string', default: '5000' },
      corpus: { type: 'string', default: resolve(import.meta.dirname, '..', 'test', 'fuzz-corpus') },
      'write-corpus': { type: 'string' },
      ...CONNECTION_ARGS,
    },
  });
  const conn = connection(values);
  if (values['write-corpus']) {
    mkdirSync(values['write-corpus'], { recursive: true });
    for (const [file, cases] of Object.entries(buildCorpus())) {
      writeFileSync(join(values['write-corpus'], file), `${JSON.stringify(cases, null, 1)}\n`);
    }
    console.log(`wrote the seed corpus to ${values['write-corpus']}`);
    return;
  }
  const seed = values.seed === undefined ? Date.now() % 1_000_000 : Number(values.seed);
  const dir = mkdtempSync(join(tmpdir(), 'buffdb-fuzz-'));
  const { capabilities } = await loadBackend(values.backend);
  const server = await startFuzzServer(dir, ['--backend', values.backend, ...conn.serverArgs]);
  console.log(
    `fuzz: backend ${values.backend}, server pid ${server.child.pid} on ${server.addr}, seed ${seed}, ${values.cases} random cases`,
  );
  const rssBefore = rssOf(server.child.pid!);
  let stats: FuzzStats;
  try {
    stats = await runFuzz(
      server.addr,
      loadCorpus(values.corpus),
      Number(values.cases),
      seed,
      Number(values.abandon),
      (l) => console.log(l),
      capabilities.sqlDialect !== null,
      conn,
    );
    stats.rssMiB = rssOf(server.child.pid!);
    if (server.child.exitCode !== null) stats.problems.push(`server exited with ${server.child.exitCode}`);
  } finally {
    server.child.kill('SIGTERM');
  }
  const code = await server.exited;
  if (code !== 0) stats.problems.push(`server exit status ${code} after SIGTERM`);
  if (/\n\s+at /.test(server.stderr())) stats.problems.push('server printed a stack trace');
  rmSync(dir, { recursive: true, force: true });
  console.log(
    `fuzz: ${stats.cases} gRPC cases, ${stats.oversize} oversize, ${stats.h2} raw HTTP/2 cases, ` +
      `${stats.abandoned} abandoned streams in ${stats.seconds.toFixed(1)} s; server RSS ${rssBefore.toFixed(0)} → ` +
      `${stats.rssMiB.toFixed(0)} MiB; ${stats.problems.length} problems`,
  );
  for (const p of stats.problems.slice(0, 50)) console.log(`  PROBLEM ${p}`);
  process.exit(stats.problems.length > 0 ? 1 : 0);
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) await main();
