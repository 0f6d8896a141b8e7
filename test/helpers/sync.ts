/**
 * Sync test sites: `buffdb run` processes with their own stores, restartable on the same address
 * and files (after SIGTERM or kill -9), and what tests ask of them: Sync/Status, full dumps.
 */
import { credentials } from '@grpc/grpc-js';
import { connectEtcd } from '../../src/client/etcd.js';
import { connect } from '../../src/client/network.js';
import { RangeRequest, type RangeResponse } from '../../src/generated/etcd/etcdserverpb/rpc.js';
import { type StatusResponse, SyncClient } from '../../src/generated/sync.js';
import { type DumpOptions, dumpStore, type StoreDump } from './dump.js';
import { bidi, eventually, type ServerProcess, type ServerStores, serverStores, spawnServer } from './server.js';

export class Site {
  proc: ServerProcess | undefined;
  private port = 0;

  private constructor(
    readonly name: string,
    readonly stores: ServerStores,
    private readonly extra: string[],
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** Starts a site; `extra`: more `buffdb run` flags (`--sync-to`, prefixes, …). */
  static async start(name: string, backend: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<Site> {
    const site = new Site(name, await serverStores(backend, `buffdb-sync-${name}-`), extra, env);
    await site.restart();
    return site;
  }

  get addr(): string {
    if (!this.proc) throw new Error(`${this.name} is not running`);
    return this.proc.addr;
  }

  /**
   * (Re)starts the process on the same address and stores. The port is picked below the kernel's
   * ephemeral range (32768+), so no other test's port-0 socket takes it while this site is down.
   */
  async restart(extra: string[] = []): Promise<void> {
    const env = { BUFFDB_SHUTDOWN_GRACE_MS: '2000', ...this.env };
    for (let attempt = 0; ; attempt++) {
      const first = this.port === 0;
      const port = first ? 20_000 + Math.floor(Math.random() * 12_000) : this.port;
      const args = this.stores.args(...this.extra, ...extra);
      args[0] = `127.0.0.1:${port}`;
      try {
        this.proc = await spawnServer(args, this.stores.dir, env);
        this.port = port;
        return;
      } catch (err) {
        // Another test's site drew the same port: draw again (only before this site has one).
        if (!first || attempt > 5 || !/EADDRINUSE/.test((err as Error).message)) throw err;
      }
    }
  }

  async kill9(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    this.proc = undefined;
    p.child.kill('SIGKILL');
    await p.exited;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    if (!p) return;
    this.proc = undefined;
    p.child.kill('SIGTERM');
    await p.exited;
  }

  async dispose(): Promise<void> {
    await this.kill9();
    await this.stores.dispose();
  }

  status(): Promise<StatusResponse> {
    const client = new SyncClient(this.addr, credentials.createInsecure());
    return new Promise<StatusResponse>((resolve, reject) => {
      client.status({}, (err, value) => (err ? reject(err) : resolve(value)));
    }).finally(() => client.close());
  }

  /** The site's dump; a failure names the site and ends with its log (a crash shows there). */
  async dump(options: DumpOptions = {}): Promise<StoreDump> {
    try {
      return await dumpStore(this.addr, options);
    } catch (err) {
      const log = this.proc?.stderr().slice(-2000) ?? '(not running)';
      throw new Error(`dump of ${this.name} failed: ${(err as Error).message}\n${this.name} log: ${log}`);
    }
  }
}

/** Waits until every site's dump equals the first's; returns it. Fails with the differences. */
export async function converged(sites: Site[], what: string, deadlineMs = 60_000): Promise<StoreDump> {
  let dumps: StoreDump[] = [];
  try {
    await eventually(
      async () => {
        dumps = await Promise.all(sites.map((s) => s.dump()));
        const first = JSON.stringify(dumps[0]);
        return dumps.every((d) => JSON.stringify(d) === first);
      },
      what,
      deadlineMs,
    );
  } catch (err) {
    const sizes = dumps.map((d, i) => `${sites[i]!.name}: ${d.kv.length} keys`).join(', ');
    throw new Error(`${(err as Error).message} (${sizes})`);
  }
  return dumps[0]!;
}

/** The value of `key` in a dump (values are base64 in dumps), or undefined. */
export function valueIn(dump: StoreDump, key: string): string | undefined {
  const k = Buffer.from(key).toString('base64');
  const hit = dump.kv.find(([kk]) => kk === k);
  return hit && Buffer.from(hit[1], 'base64').toString();
}

/** Kv Set of `pairs` on the server at `addr` (one stream); resolves once every write is acknowledged. */
export async function setKeys(addr: string, pairs: [key: string, value: string][]): Promise<void> {
  const clients = connect(addr);
  try {
    const { out, err } = await bidi(
      clients.kv.set(),
      pairs.map(([key, value]) => ({ key, value })),
    );
    if (err) throw err;
    if (out.length !== pairs.length) throw new Error(`${out.length} of ${pairs.length} writes acknowledged`);
  } finally {
    clients.close();
  }
}

export async function deleteKeys(addr: string, keys: string[]): Promise<void> {
  const clients = connect(addr);
  try {
    const { err } = await bidi(
      clients.kv.delete(),
      keys.map((key) => ({ key })),
    );
    if (err) throw err;
  } finally {
    clients.close();
  }
}

/** etcd Range of the keys under `prefix` on the server at `addr`: key → version (writes since creation). */
export async function versionsUnder(addr: string, prefix: string): Promise<Map<string, number>> {
  const etcd = connectEtcd(addr);
  try {
    const key = Buffer.from(prefix);
    const rangeEnd = Buffer.from(prefix);
    rangeEnd[rangeEnd.length - 1]! += 1;
    const res = await new Promise<RangeResponse>((resolve, reject) =>
      etcd.kv.range(RangeRequest.fromPartial({ key, rangeEnd }), (err, r) => (err ? reject(err) : resolve(r))),
    );
    return new Map(res.kvs.map((kv) => [kv.key.toString(), Number(kv.version)]));
  } finally {
    etcd.kv.close();
  }
}

/** Whether history at revision `rev` is compacted on the server at `addr` (an etcd Range at it fails). */
export async function isCompacted(addr: string, rev: number): Promise<boolean> {
  const etcd = connectEtcd(addr);
  try {
    return await new Promise<boolean>((resolve) =>
      etcd.kv.range(RangeRequest.fromPartial({ key: Buffer.from('a'), revision: BigInt(rev) }), (err) =>
        resolve(err !== null && /compacted/.test(err.details)),
      ),
    );
  } finally {
    etcd.kv.close();
  }
}
