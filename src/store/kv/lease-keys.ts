/** The `lease_key` map: (lease id, key) → nothing; which keys a lease deletes when it ends. */

export function leaseKeyEntry(lease: bigint, key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(8 + key.length);
  out.writeBigInt64BE(lease, 0);
  key.copy(out, 8);
  return out;
}

/**
 * The span of every entry of `lease`. Entries sort by their bytes, so negative ids (etcd lets a
 * client choose them) sort after positive ones: the end is the next id in unsigned byte order.
 */
export function leaseKeyPrefix(lease: bigint): { start: Buffer; end: Buffer | undefined } {
  const unsigned = BigInt.asUintN(64, lease);
  const start = Buffer.allocUnsafe(8);
  start.writeBigUInt64BE(unsigned, 0);
  const end = unsigned === 2n ** 64n - 1n ? undefined : Buffer.allocUnsafe(8);
  end?.writeBigUInt64BE(unsigned + 1n, 0);
  return { start, end };
}

export function leaseKeyOf(entry: Buffer): Buffer {
  return entry.subarray(8);
}

/** Lease ids as map keys (8 bytes, big-endian). */
export function leaseId(lease: bigint): Buffer {
  const out = Buffer.allocUnsafe(8);
  out.writeBigInt64BE(lease, 0);
  return out;
}
