/**
 * DuckDB backup: while the store holds its writes ('held') nothing is being committed, so the
 * database file and its WAL are at rest and a plain copy of both is a consistent store (DuckDB
 * replays the WAL when the copy is opened). EXPORT DATABASE is not available: the sandbox turns
 * off DuckDB's file access.
 */
import { copyFile } from 'node:fs/promises';
import { StoreError, status } from '../../errors.js';
import { DONE, type SnapshotCopy } from '../snapshot.js';

export function duckdbSnapshot(path: string): (destPath: string) => Promise<SnapshotCopy> {
  return async (destPath) => {
    if (path === ':memory:') throw new StoreError(status.FAILED_PRECONDITION, 'an in-memory store cannot be backed up');
    await copyFile(path, destPath);
    await copyFile(`${path}.wal`, `${destPath}.wal`).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
    return DONE;
  };
}
