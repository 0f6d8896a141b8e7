/**
 * LMDB backup: lmdb-js's backup() (LMDB's mdb_env_copy: a consistent copy from one read
 * transaction). It runs while the store holds its writes ('held'), so both stores of a backup are
 * copied at the same point in time.
 */
import type { RootDatabase } from 'lmdb';
import { DONE, type SnapshotCopy } from '../snapshot.js';

export function lmdbSnapshot(db: RootDatabase<Buffer, Buffer>): (destPath: string) => Promise<SnapshotCopy> {
  return async (destPath) => {
    await db.backup(destPath, false);
    return DONE;
  };
}
