/**
 * Leases, as etcd's: a lease has a TTL; keys attached to it are deleted — in one revision, which
 * watchers see — when it is revoked or expires without a keep-alive. Leases live in the `lease`
 * map (granted TTL and deadline), so they survive a restart; the deadline is wall-clock time
 * persisted at grant and at every keep-alive, so a key set with a TTL expires on time even if the
 * store was closed meanwhile (etcd instead gives every lease a fresh TTL after a restart).
 */
import type { MaybePromise } from '../../backends/backend.js';
import { failedPrecondition, NotFoundError, outOfRange } from '../../errors.js';
import { leaseId, leaseKeyOf, leaseKeyPrefix } from './lease-keys.js';
import type { MvccBatch } from './mvcc-batch.js';

/** etcd's minimum TTL with its default election settings: (3 × 10 ticks / 2) × 100 ms, rounded up. */
export const MIN_LEASE_TTL = 2;
/** etcd's MaxLeaseTTL. */
export const MAX_LEASE_TTL = 9_000_000_000;
/** How often expiry is checked (etcd checks every 500 ms). */
const EXPIRY_CHECK_MS = 500;
const RELOAD_EVERY_TICKS = 10;
const ALL = { start: Buffer.alloc(0), end: undefined, limit: Number.MAX_SAFE_INTEGER, reverse: false };

export interface LeaseInfo {
  id: bigint;
  /** TTL granted, in seconds. */
  grantedTtl: number;
  /** Wall-clock ms when it expires without a keep-alive. */
  deadline: number;
}

export type RunInBatch = <T>(work: (b: MvccBatch) => MaybePromise<T>) => Promise<T>;

function encodeLease(l: LeaseInfo): Buffer {
  const out = Buffer.allocUnsafe(16);
  out.writeDoubleBE(l.grantedTtl, 0);
  out.writeDoubleBE(l.deadline, 8);
  return out;
}

function decodeLease(id: bigint, raw: Buffer): LeaseInfo {
  return { id, grantedTtl: raw.readDoubleBE(0), deadline: raw.readDoubleBE(8) };
}

export const leaseNotFound = () => new NotFoundError('etcdserver: requested lease not found');

export class Leases {
  private readonly live = new Map<bigint, LeaseInfo>();
  private timer: NodeJS.Timeout | undefined;
  private counter = 0;
  private expiring = false;

  constructor(
    private readonly run: RunInBatch,
    private readonly memberId: () => bigint,
    private readonly now: () => number = Date.now,
  ) {}

  /** Loads the leases and revokes those already expired. */
  load(): Promise<void> {
    return this.reload();
  }

  /** Starts revoking leases as they expire (a server does; a one-shot CLI command need not). */
  startExpiry(): void {
    let ticks = 0;
    this.timer ??= setInterval(() => {
      // Every few seconds re-read the leases: another process (the CLI) may have granted some.
      const reload = ++ticks % RELOAD_EVERY_TICKS === 0;
      // A failed check (the store closing, a busy engine) is simply tried again at the next tick.
      (reload ? this.reload() : this.expire()).catch(() => {});
    }, EXPIRY_CHECK_MS);
    this.timer.unref();
  }

  private async reload(): Promise<void> {
    const rows = await this.run((b) => b.ops.maps.range('lease', ALL));
    this.live.clear();
    for (const [key, value] of rows) {
      const id = key.readBigInt64BE(0);
      this.live.set(id, decodeLease(id, value));
    }
    await this.expire();
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** etcd's id generator: member id in the top bits, then milliseconds and a counter; always positive. */
  private newId(): bigint {
    for (;;) {
      const suffix = (BigInt(this.now()) << 8n) + BigInt(++this.counter);
      const id = (((this.memberId() & 0xffffn) << 48n) | (suffix & 0xffffffffffffn)) & 0x7fffffffffffffffn;
      if (id > 0n && !this.live.has(id)) return id;
    }
  }

  async grant(ttl: number, requested: bigint): Promise<{ id: bigint; ttl: number; rev: number }> {
    if (ttl > MAX_LEASE_TTL) throw outOfRange('etcdserver: too large lease TTL');
    const granted = Math.max(ttl, MIN_LEASE_TTL);
    const id = requested === 0n ? this.newId() : requested;
    const info: LeaseInfo = { id, grantedTtl: granted, deadline: this.now() + granted * 1000 };
    const rev = await this.run(async (b) => {
      if ((await b.ops.maps.get('lease', leaseId(id))) !== undefined) {
        throw failedPrecondition('etcdserver: lease already exists');
      }
      await b.ops.maps.put('lease', leaseId(id), encodeLease(info));
      return b.rev;
    });
    this.live.set(id, info);
    return { id, ttl: granted, rev };
  }

  /**
   * Deletes the lease and its keys (one revision). `onlyIfExpired`: only if the stored deadline has
   * passed — another process sharing the store may have renewed it (answers undefined then).
   */
  async revoke(id: bigint, onlyIfExpired = false): Promise<number> {
    const rev = await this.run(async (b) => {
      const raw = await b.ops.maps.get('lease', leaseId(id));
      if (raw === undefined) throw leaseNotFound();
      if (onlyIfExpired) {
        const stored = decodeLease(id, raw);
        if (stored.deadline > this.now()) {
          this.live.set(id, stored);
          return undefined;
        }
      }
      await b.mutate(async () => {
        for (const key of await this.keysOf(b, id)) {
          const record = await b.ops.get(key);
          if (record && record.lease === id) await b.delete(record);
        }
        await b.ops.maps.delete('lease', leaseId(id));
      });
      return b.rev;
    });
    if (rev === undefined) return this.hubRev();
    this.live.delete(id);
    return rev;
  }

  private hubRev(): Promise<number> {
    return this.run((b) => b.rev);
  }

  /** Renews the lease; answers its TTL, or 0 when it does not exist (as etcd's keep-alive does). */
  async keepAlive(id: bigint): Promise<{ ttl: number; rev: number }> {
    // A lease granted through another process sharing the store is not in `live` yet: read it.
    const info =
      this.live.get(id) ??
      (await this.run(async (b) => {
        const raw = await b.ops.maps.get('lease', leaseId(id));
        return raw === undefined ? undefined : decodeLease(id, raw);
      }));
    if (!info) return { ttl: 0, rev: await this.run((b) => b.rev) };
    const renewed = { ...info, deadline: this.now() + info.grantedTtl * 1000 };
    const rev = await this.run(async (b) => {
      if ((await b.ops.maps.get('lease', leaseId(id))) === undefined) return undefined;
      await b.ops.maps.put('lease', leaseId(id), encodeLease(renewed));
      return b.rev;
    });
    if (rev === undefined) {
      this.live.delete(id);
      return { ttl: 0, rev: await this.run((b) => b.rev) };
    }
    this.live.set(id, renewed);
    return { ttl: info.grantedTtl, rev };
  }

  /**
   * etcd's TimeToLive: remaining whole seconds, truncated as etcd does (59 right after a 60 s
   * grant; -1 when the lease does not exist), granted TTL, keys.
   */
  async timeToLive(
    id: bigint,
    withKeys: boolean,
  ): Promise<{ ttl: number; grantedTtl: number; keys: Buffer[]; rev: number }> {
    return this.run(async (b) => {
      const raw = await b.ops.maps.get('lease', leaseId(id));
      if (raw === undefined) return { ttl: -1, grantedTtl: 0, keys: [], rev: b.rev };
      const info = decodeLease(id, raw);
      const ttl = Math.max(0, Math.floor((info.deadline - this.now() - 1) / 1000));
      return { ttl, grantedTtl: info.grantedTtl, keys: withKeys ? await this.keysOf(b, id) : [], rev: b.rev };
    });
  }

  async list(): Promise<{ ids: bigint[]; rev: number }> {
    return this.run(async (b) => {
      const rows = await b.ops.maps.range('lease', ALL);
      return { ids: rows.map(([key]) => key.readBigInt64BE(0)), rev: b.rev };
    });
  }

  private async keysOf(b: MvccBatch, id: bigint): Promise<Buffer[]> {
    const span = leaseKeyPrefix(id);
    const rows = await b.ops.maps.range('lease_key', { ...span, limit: Number.MAX_SAFE_INTEGER, reverse: false });
    return rows.map(([entry]) => leaseKeyOf(entry));
  }

  /** Revokes every lease past its deadline. */
  async expire(): Promise<void> {
    if (this.expiring) return;
    this.expiring = true;
    try {
      const now = this.now();
      for (const info of [...this.live.values()]) {
        if (info.deadline > now) continue;
        try {
          await this.revoke(info.id, true);
        } catch (err) {
          if (err instanceof NotFoundError) this.live.delete(info.id);
          else throw err;
        }
      }
    } finally {
      this.expiring = false;
    }
  }
}
