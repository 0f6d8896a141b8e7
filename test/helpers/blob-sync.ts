/** Blob sync tests' shared steps: store a blob, wait until servers hold the same blobs, stop a fleet. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import type { BlobClient } from '../../src/client/network.js';
import type { StoreRequest } from '../../src/generated/blob.js';
import { dumpStore, type StoreDump } from './dump.js';
import { bidi, eventually, type ServerProcess, type ServerStores } from './server.js';

export async function storeOne(blob: BlobClient, req: StoreRequest): Promise<bigint> {
  const res = await bidi(blob.store(), [req]);
  assert.equal(res.err, undefined, res.err?.details);
  return res.out[0]!.id;
}

export const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex');

/** Waits until every server's blob dump equals `expected` (blobs by id); answers the dumps. */
export async function converged(
  addrs: string[],
  ids: bigint[],
  expected: StoreDump['blobs'],
  deadlineMs = 30_000,
): Promise<void> {
  let last: StoreDump['blobs'][] = [];
  expected = [...expected].sort((x, y) => (BigInt(x[0]) < BigInt(y[0]) ? -1 : 1));
  try {
    await eventually(
      async () => {
        last = await Promise.all(addrs.map(async (a) => (await dumpStore(a, { blobIds: ids })).blobs));
        return last.every((d) => JSON.stringify(d) === JSON.stringify(expected));
      },
      'every server holds the same blobs',
      deadlineMs,
    );
  } catch (err) {
    assert.deepEqual(
      last,
      addrs.map(() => expected),
      (err as Error).message,
    );
  }
}

export interface Fleet {
  stores: ServerStores[];
  procs: ServerProcess[];
}

export async function stopAll(fleet: Fleet): Promise<void> {
  for (const p of fleet.procs) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exited;
  }
  for (const s of fleet.stores) await s.dispose();
}
