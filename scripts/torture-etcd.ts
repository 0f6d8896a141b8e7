/**
 * The etcd part of the crash loop (scripts/torture.ts): clients also write through the etcd API
 * (Puts on distinct keys, and Txns putting two keys at once), and after every restart:
 *  - the store revision is at least every revision ever acknowledged, and no revision is handed
 *    out twice, across restarts;
 *  - every acknowledged etcd write is there at its acknowledged revision (mod_revision);
 *  - a Txn in flight at the kill landed whole or not at all.
 * Values are tracked in the same map as the buffdb Kv writes, so the common checks (value after
 * restart, no phantom keys) cover these keys too.
 */
import type { ServiceError } from '@grpc/grpc-js';
import type { EtcdClients } from '../src/client/etcd.js';
import * as pb from '../src/generated/etcd/etcdserverpb/rpc.js';

export const ABSENT = Symbol('absent');
export type KvState = string | typeof ABSENT;

/** What one key (or blob) may hold: the acknowledged state, then in-flight outcomes in order. */
export interface Tracked<S> {
  confirmed: S;
  pending: S[];
}

const b = (s: string): Buffer => Buffer.from(s);

function unary<Req, Res>(c: EtcdClients, method: 'put' | 'txn' | 'range', req: Req): Promise<Res> {
  return new Promise((resolve, reject) =>
    (c.kv[method] as unknown as (r: Req, cb: (e: ServiceError | null, r?: Res) => void) => void).call(
      c.kv,
      req,
      (err, res) => (err ? reject(err) : resolve(res!)),
    ),
  );
}

export class EtcdTorture {
  /** The highest revision any etcd write was acknowledged at. */
  maxAckedRev = 0;
  acked = 0;
  private readonly revOf = new Map<string, number>();
  private readonly revisions = new Set<number>();
  /** Txns sent and not answered: both puts landed, or neither. */
  private inFlightTxns: { keys: [string, string]; values: [string, string] }[] = [];

  constructor(
    private readonly kv: Map<string, Tracked<KvState>>,
    private readonly int: (n: number) => number,
    private readonly nonce: () => number,
    private readonly fail: (msg: string) => never,
  ) {}

  private track(key: string): Tracked<KvState> {
    const t = this.kv.get(key) ?? { confirmed: ABSENT, pending: [] };
    this.kv.set(key, t);
    return t;
  }

  private acknowledge(keys: string[], rev: number): void {
    if (this.revisions.has(rev)) this.fail(`revision ${rev} acknowledged twice`);
    this.revisions.add(rev);
    this.maxAckedRev = Math.max(this.maxAckedRev, rev);
    for (const key of keys) {
      const t = this.kv.get(key)!;
      t.confirmed = t.pending.shift()!;
      this.revOf.set(key, rev);
      this.acked++;
    }
  }

  /** One etcd operation of client `who` (keys `e<who>-k*`, its own); the error if the server died. */
  async write(c: EtcdClients, who: number): Promise<ServiceError | undefined> {
    const value = () => `e${this.nonce()}-${'y'.repeat(this.int(100))}`;
    try {
      if (this.int(3) > 0) {
        // Puts on distinct keys, all in flight at once.
        const keys = [...new Set(Array.from({ length: 1 + this.int(8) }, () => `e${who}-k${this.int(30)}`))];
        await Promise.all(
          keys.map(async (key) => {
            const v = value();
            this.track(key).pending.push(v);
            const res = await unary<pb.PutRequest, pb.PutResponse>(
              c,
              'put',
              pb.PutRequest.fromPartial({ key: b(key), value: b(v) }),
            );
            this.acknowledge([key], Number(res.header!.revision));
          }),
        );
      } else {
        const k1 = `e${who}-k${this.int(30)}`;
        const k2 = `e${who}-t${this.int(10)}`;
        const values: [string, string] = [value(), value()];
        this.track(k1).pending.push(values[0]);
        this.track(k2).pending.push(values[1]);
        const txn = { keys: [k1, k2] as [string, string], values };
        this.inFlightTxns.push(txn);
        const res = await unary<pb.TxnRequest, pb.TxnResponse>(
          c,
          'txn',
          pb.TxnRequest.fromPartial({
            success: [
              { requestPut: pb.PutRequest.fromPartial({ key: b(k1), value: b(values[0]) }) },
              { requestPut: pb.PutRequest.fromPartial({ key: b(k2), value: b(values[1]) }) },
            ],
          }),
        );
        this.inFlightTxns = this.inFlightTxns.filter((t) => t !== txn);
        this.acknowledge([k1, k2], Number(res.header!.revision));
      }
      return undefined;
    } catch (err) {
      return err as ServiceError;
    }
  }

  /** After a restart, before the common checks settle the in-flight states. */
  async check(c: EtcdClients, loop: number): Promise<void> {
    const all = await unary<pb.RangeRequest, pb.RangeResponse>(
      c,
      'range',
      pb.RangeRequest.fromPartial({ key: b('e'), rangeEnd: b('f') }),
    );
    const rev = Number(all.header!.revision);
    if (rev < this.maxAckedRev) {
      this.fail(`loop ${loop}: the store is at revision ${rev}, below the acknowledged revision ${this.maxAckedRev}`);
    }
    const found = new Map(all.kvs.map((kv) => [kv.key.toString(), kv]));
    for (const [key, acked] of this.revOf) {
      const t = this.kv.get(key)!;
      if (t.pending.length > 0) continue;
      const kv = found.get(key);
      if (!kv || Number(kv.modRevision) !== acked || kv.value.toString() !== t.confirmed) {
        this.fail(
          `loop ${loop}: ${key} was acknowledged at revision ${acked} with ${JSON.stringify(t.confirmed)}; ` +
            `found ${kv ? `${JSON.stringify(kv.value.toString())} at ${kv.modRevision}` : 'nothing'}`,
        );
      }
    }
    for (const { keys, values } of this.inFlightTxns) {
      const landed = keys.map((k, i) => found.get(k)?.value.toString() === values[i]);
      if (landed[0] !== landed[1])
        this.fail(`loop ${loop}: a txn in flight at the kill landed in part: ${keys.join(', ')}`);
      if (landed[0]) {
        for (const k of keys) this.revOf.set(k, Number(found.get(k)!.modRevision));
        this.revisions.add(Number(found.get(keys[0])!.modRevision));
      }
    }
    this.inFlightTxns = [];
    // Puts in flight that landed: their revisions are taken now (they count as handed out).
    for (const [key, t] of this.kv) {
      const kv = found.get(key);
      if (t.pending.length > 0 && kv && t.pending.includes(kv.value.toString())) {
        this.revOf.set(key, Number(kv.modRevision));
        this.revisions.add(Number(kv.modRevision));
        this.maxAckedRev = Math.max(this.maxAckedRev, Number(kv.modRevision));
      }
    }
  }
}
