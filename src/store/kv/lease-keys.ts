/** The `lease_key` map: (lease id, key) → nothing; which keys a lease deletes when it ends. */

export function leaseKeyEntry(lease: bigint, key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(8 + key.length);
  out.writeBigInt64BE(lease, 0);
  key.copy(out, 8);
  return out;
}

/** The span of every entry of `lease`. */
export function leaseKeyPrefix(lease: bigint): { start: Buffer; end: Buffer | undefined } {
  const start = Buffer.allocUnsafe(8);
  start.writeBigInt64BE(lease, 0);
  const end = lease === 2n ** 63n - 1n ? undefined : Buffer.allocUnsafe(8);
  end?.writeBigInt64BE(lease + 1n, 0);
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
