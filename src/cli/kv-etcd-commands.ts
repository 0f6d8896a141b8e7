/**
 * `buffdb kv list`, `kv watch` and `kv set --ttl`: the revisioned side of the key space from the
 * command line. The commands take an `EtcdKvApi` — here the store file itself (`localKvApi`); a
 * network client can implement the same few methods.
 */
import { isUtf8 } from 'node:buffer';
import { once } from 'node:events';
import type { KvRecord } from '../backends/backend.js';
import type { KvEvent } from '../store/kv/history.js';
import { prefixSpan } from '../store/kv/key-span.js';
import { type PutArgs, type PutResult, type RangeArgs, type RangeResult, rangeArgs } from '../store/kv/kv-api.js';
import type { KvStore } from '../store/kv/kv-store.js';
import type { WatchSink, WatchSpec } from '../store/kv/watch-hub.js';
import { openKvStore, resolveBackend } from '../store/open-store.js';
import { CliError, EXIT } from './exit-codes.js';
import { type StoreTarget, withStore } from './store-access.js';

/** What the commands need from a key space. */
export interface EtcdKvApi {
  range(args: RangeArgs): Promise<RangeResult>;
  put(args: PutArgs): Promise<PutResult>;
  /** A lease of `ttlSeconds` (etcd's minimum is 2 s); its keys go when it expires. */
  grantLease(ttlSeconds: number): Promise<bigint>;
  /** Starts a watcher; the sink may say it is full, then `resume` once it has room. */
  watch(spec: WatchSpec, sink: WatchSink): { resume(): void; stop(): void };
  /**
   * For a store file: pick up what other processes committed (a file has no server to push
   * changes, so watchers see them when the store is next read). Absent for a live server.
   */
  poll?(): Promise<void>;
}

/** The store file as an EtcdKvApi. */
export function localKvApi(kv: KvStore): EtcdKvApi {
  const nothing = rangeArgs({ start: Buffer.alloc(0), end: Buffer.alloc(0) });
  return {
    range: (args) => kv.range(args),
    put: (args) => kv.put(args),
    grantLease: async (ttl) => (await kv.leases.grant(ttl, 0n)).id,
    watch: (spec, sink) => {
      const w = kv.watch(spec, sink);
      return { resume: () => kv.hub.resume(w), stop: () => kv.unwatch(w) };
    },
    // Any read runs a store batch, which publishes other processes' new revisions to watchers.
    poll: async () => {
      await kv.range(nothing);
    },
  };
}

/**
 * Runs `work` on the key space: a running server with --addr (over its etcd services), else the
 * store file (opened, then closed). `readOnly` (kv watch): the command never writes, so on engines
 * several processes share it never takes the write lock from a server.
 */
export async function withKvApi<T>(
  target: StoreTarget,
  readOnly: boolean,
  work: (api: EtcdKvApi) => Promise<T>,
): Promise<T> {
  if (target.remote) return (await import('./remote-etcd.js')).withRemoteKvApi(target.remote, work);
  return withStore(
    'KV',
    target,
    async ({ backend, store }) => {
      const engine = await resolveBackend(backend);
      // Only where another process may hold the store too: a single-process engine has no one to share with.
      const shared = readOnly && engine.capabilities.multiProcess;
      return openKvStore(engine, store, { background: false, readOnly: shared });
    },
    (kv) => work(localKvApi(kv)),
  );
}

/** Key or value as JSON: text when it is UTF-8, else base64 under `<name>_base64`. */
function jsonBytes(name: string, bytes: Buffer): Record<string, string> {
  return isUtf8(bytes) ? { [name]: bytes.toString('utf8') } : { [`${name}_base64`]: bytes.toString('base64') };
}

/** Writes to stdout, waiting when the reader is slow. */
async function print(text: string | Buffer): Promise<void> {
  if (!process.stdout.write(text)) await once(process.stdout, 'drain');
}

export interface ListOptions {
  keysOnly: boolean;
  /** At most this many keys; 0: all. */
  limit: number;
  json: boolean;
}

function listLine(kv: KvRecord, options: ListOptions): Buffer | string {
  if (options.json) {
    const record = {
      ...jsonBytes('key', kv.key),
      ...(options.keysOnly ? {} : jsonBytes('value', kv.value)),
      create_revision: kv.createRev,
      mod_revision: kv.modRev,
      version: kv.version,
      ...(kv.lease !== 0n ? { lease: kv.lease.toString() } : {}),
    };
    return `${JSON.stringify(record)}\n`;
  }
  if (options.keysOnly) return Buffer.concat([kv.key, Buffer.from('\n')]);
  return Buffer.concat([kv.key, Buffer.from('\t'), kv.value, Buffer.from('\n')]);
}

const PAGE = 1000;

/** Keys under `prefix` in byte order, a page at a time (one consistent page per read). */
export async function kvList(api: EtcdKvApi, prefix: string, options: ListOptions): Promise<void> {
  let { start, end } = prefixSpan(Buffer.from(prefix, 'utf8'));
  let left = options.limit > 0 ? options.limit : Number.POSITIVE_INFINITY;
  while (left > 0) {
    const args = rangeArgs({ start, end }, { limit: Math.min(PAGE, left), keysOnly: options.keysOnly });
    const page = await api.range(args);
    for (const kv of page.kvs) await print(listLine(kv, options));
    left -= page.kvs.length;
    if (!page.more || page.kvs.length === 0) return;
    start = Buffer.concat([page.kvs[page.kvs.length - 1]!.key, Buffer.of(0)]);
  }
}

export interface WatchOptions {
  json: boolean;
  /** Replay from this revision first; 0: only changes from now on. */
  rev: number;
  /** How often a store file is re-read for other processes' writes. */
  pollMs: number;
}

function eventLine(e: KvEvent, json: boolean): Buffer | string {
  const type = e.type === 'put' ? 'PUT' : 'DELETE';
  if (json) {
    const value = e.type === 'put' ? jsonBytes('value', e.kv.value) : {};
    return `${JSON.stringify({ type, ...jsonBytes('key', e.kv.key), ...value, revision: e.kv.modRev })}\n`;
  }
  const parts = [Buffer.from(`${type}\t`), e.kv.key];
  if (e.type === 'put') parts.push(Buffer.from('\t'), e.kv.value);
  parts.push(Buffer.from('\n'));
  return Buffer.concat(parts);
}

/**
 * Prints one line per change under `prefix` until `signal` aborts. Output is written as it comes;
 * when stdout is slow the watcher is held back and catches up from the history, never buffered.
 */
export async function kvWatch(
  api: EtcdKvApi,
  prefix: string,
  options: WatchOptions,
  signal: AbortSignal,
): Promise<void> {
  let watcher: { resume(): void; stop(): void } | undefined;
  let timer: NodeJS.Timeout | undefined;
  let polling = false;
  await new Promise<void>((resolve, reject) => {
    const stop = (err?: Error): void => {
      clearInterval(timer);
      watcher?.stop();
      if (err) reject(err);
      else resolve();
    };
    signal.addEventListener('abort', () => stop(), { once: true });
    watcher = api.watch(
      { span: prefixSpan(Buffer.from(prefix, 'utf8')), startRev: options.rev, noPut: false, noDelete: false },
      {
        deliver: (events) => {
          let room = true;
          for (const e of events) room = process.stdout.write(eventLine(e, options.json));
          if (!room) process.stdout.once('drain', () => watcher?.resume());
          return room;
        },
        compacted: (rev) =>
          stop(
            new CliError(
              EXIT.FAILURE,
              `the history before revision ${rev} is compacted: watch from --rev ${rev} or later`,
            ),
          ),
        failed: (err) => stop(err),
      },
    );
    if (api.poll && !signal.aborted) {
      const poll = api.poll.bind(api);
      timer = setInterval(() => {
        if (polling) return;
        polling = true;
        poll()
          .catch((err: unknown) => stop(err as Error))
          .finally(() => {
            polling = false;
          });
      }, options.pollMs);
    }
    if (signal.aborted) stop();
  });
}

/** `kv set KEY VALUE --ttl SECONDS`: the key goes when the lease expires (at the next store open or server check). */
export async function kvSetWithTtl(api: EtcdKvApi, key: string, value: string, ttlSeconds: number): Promise<void> {
  const lease = await api.grantLease(ttlSeconds);
  await api.put({
    key: Buffer.from(key, 'utf8'),
    value: Buffer.from(value, 'utf8'),
    lease,
    prevKv: false,
    ignoreValue: false,
    ignoreLease: false,
  });
}
