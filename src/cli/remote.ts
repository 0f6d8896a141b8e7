/**
 * The `kv` and `blob` commands against a running server (`--addr HOST:PORT`): the same operations
 * as on a store file (store-access.ts), over the gRPC services, with TLS, mutual TLS and a token
 * when asked. Server errors keep their words (they come from the same store layer), so output and
 * exit statuses match the file commands; an unreachable server, a TLS failure or a refused token
 * is one line and status 4.
 */
import {
  type ChannelCredentials,
  type ClientDuplexStream,
  type ClientWritableStream,
  credentials,
  Metadata,
  type ServiceError,
  status,
} from '@grpc/grpc-js';
import { downloadBlob, uploadBlob } from '../client/blob-transfer.js';
import { connect } from '../client/network.js';
import { readPem } from '../server/tls.js';
import type { EqualityMode } from '../store/equality.js';
import { CliError, EXIT } from './exit-codes.js';
import type { BlobAccess, KvAccess, RemoteTarget } from './store-access.js';

export function channelCredentials(target: RemoteTarget): ChannelCredentials {
  if (target.tlsCa === undefined && target.tlsCert === undefined && target.tlsKey === undefined) {
    return credentials.createInsecure();
  }
  if ((target.tlsCert === undefined) !== (target.tlsKey === undefined)) {
    throw new CliError(EXIT.USAGE, '--tls-cert and --tls-key go together (a client certificate and its key)');
  }
  // Node warns (DEP0123) when TLS is used with an IP address as the server name; the certificate
  // is still checked against that address, so the warning is noise on a command line.
  process.noDeprecation = true;
  return credentials.createSsl(
    target.tlsCa === undefined ? null : readPem(target.tlsCa, 'TLS CA file'),
    target.tlsKey === undefined ? null : readPem(target.tlsKey, 'TLS key'),
    target.tlsCert === undefined ? null : readPem(target.tlsCert, 'TLS certificate'),
  );
}

/** A server status as the CLI reports it: NOT_FOUND is status 3 as on a file, the rest status 4. */
export function toCliError(err: ServiceError, addr: string, hasToken: boolean): CliError {
  const details = err.details || err.message;
  if (err.code === status.NOT_FOUND) return new CliError(EXIT.NOT_FOUND, details);
  if (err.code === status.UNAVAILABLE) {
    // grpc-js: "No connection established. Last error: Error: connect ECONNREFUSED …. Resolution note: "
    const reason = details
      .replace(/\s*Resolution note:.*$/, '')
      .replace(/^No connection established\. Last error: (?:Error: )?/, '')
      .replace(/\.$/, '');
    return new CliError(EXIT.FAILURE, `cannot reach the buffdb server at ${addr}: ${reason}`);
  }
  if (err.code === status.UNAUTHENTICATED) {
    const what = hasToken ? 'refused the token' : 'requires a token (--token or BUFFDB_TOKEN)';
    return new CliError(EXIT.FAILURE, `the server at ${addr} ${what}: ${details}`);
  }
  return new CliError(EXIT.FAILURE, details);
}

type Where = Pick<RemoteTarget, 'addr' | 'token'>;

/** Call metadata carrying the token, if there is one. */
export function tokenMetadata(target: RemoteTarget): Metadata {
  const m = new Metadata();
  if (target.token !== undefined) m.set('authorization', `Bearer ${target.token}`);
  return m;
}

/** Sends `requests` on a bidi stream and collects the answers; rejects with the stream's error. */
function exchange<Req, Res>(call: ClientDuplexStream<Req, Res>, requests: Req[], where: Where): Promise<Res[]> {
  return new Promise((resolve, reject) => {
    const out: Res[] = [];
    call.on('data', (res: Res) => out.push(res));
    call.on('error', (err: ServiceError) => reject(toCliError(err, where.addr, where.token !== undefined)));
    call.on('end', () => resolve(out));
    for (const r of requests) call.write(r);
    call.end();
  });
}

/** A client stream answered once (Eq, NotEq, EqData, NotEqData). */
function fold<Req>(
  start: (cb: (err: ServiceError | null, value?: boolean) => void) => ClientWritableStream<Req>,
  requests: Req[],
  where: Where,
): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const call = start((err, value) =>
      err ? reject(toCliError(err, where.addr, where.token !== undefined)) : resolve(value ?? false),
    );
    call.on('error', () => {});
    for (const r of requests) call.write(r);
    call.end();
  });
}

const asBuffer = (u8: Uint8Array): Buffer => Buffer.from(u8.buffer, u8.byteOffset, u8.byteLength);

export interface Remote {
  kv: KvAccess;
  blob: BlobAccess;
}

/** Connects to the server, runs `work`, and closes the connection. */
export async function withRemote<T>(target: RemoteTarget, work: (remote: Remote) => Promise<T>): Promise<T> {
  const { addr } = target;
  const where: Where = target;
  const clients = connect(addr, { credentials: channelCredentials(target) });
  const md = (): Metadata => tokenMetadata(target);
  const eq = (mode: EqualityMode) => (mode === 'eq' ? 'eq' : 'notEq');
  // A call's status as the CLI reports it; a source that failed (an unreadable input) keeps its error.
  const cliErrorOf = (err: unknown): Error =>
    typeof (err as Partial<ServiceError>).code === 'number' && 'details' in (err as object)
      ? toCliError(err as ServiceError, addr, target.token !== undefined)
      : (err as Error);
  const kv: KvAccess = {
    get: async (keys) =>
      (
        await exchange(
          clients.kv.get(md()),
          keys.map((key) => ({ key })),
          where,
        )
      ).map((r) => r.value),
    set: async (key, value) => {
      await exchange(clients.kv.set(md()), [{ key, value }], where);
    },
    delete: async (key) => {
      await exchange(clients.kv.delete(md()), [{ key }], where);
    },
    compare: (keys, mode) =>
      fold(
        (cb) => clients.kv[eq(mode)](md(), cb),
        keys.map((key) => ({ key })),
        where,
      ),
  };
  const blob: BlobAccess = {
    get: async (id) => {
      const [record] = await exchange(clients.blob.get(md()), [{ id }], where);
      return { data: record!.bytes, metadata: record!.metadata ?? null };
    },
    store: async (bytes, metadata) =>
      (await exchange(clients.blob.store(md()), [{ bytes: asBuffer(bytes), metadata }], where))[0]!.id,
    update: async (id, update) => {
      const bytes = update.bytes === undefined ? undefined : asBuffer(update.bytes);
      const request = { id, bytes, shouldUpdateMetadata: update.shouldUpdateMetadata, metadata: update.metadata };
      await exchange(clients.blob.update(md()), [request], where);
    },
    delete: async (id) => {
      await exchange(clients.blob.delete(md()), [{ id }], where);
    },
    compare: (ids, mode) =>
      fold(
        (cb) => (mode === 'eq' ? clients.blob.eqData(md(), cb) : clients.blob.notEqData(md(), cb)),
        ids.map((id) => ({ id })),
        where,
      ),
    upload: async (source, write) => {
      const result = await uploadBlob(clients.blob, source, { ...write, callMetadata: md() }).catch((err) => {
        throw cliErrorOf(err);
      });
      return result.id;
    },
    read: async (id, offset, length) => {
      const stream = downloadBlob(clients.blob, id, {
        offset: BigInt(offset),
        length: length === undefined ? undefined : BigInt(length),
        callMetadata: md(),
      });
      const header = await stream.header.catch((err) => {
        throw cliErrorOf(err);
      });
      async function* chunks(): AsyncGenerator<Buffer> {
        try {
          yield* stream as AsyncIterable<Buffer>;
        } catch (err) {
          throw cliErrorOf(err);
        }
      }
      return {
        size: Number(header.size),
        metadata: header.metadata ?? null,
        offset: Number(header.offset),
        length: Number(header.length),
        chunks: chunks(),
      };
    },
  };
  try {
    return await work({ kv, blob });
  } finally {
    clients.close();
  }
}
