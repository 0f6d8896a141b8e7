/**
 * SQLite online backup: a read transaction on a separate connection fixes the point in time (WAL
 * keeps that snapshot readable while writes go on), then SQLite's backup API copies the pages of
 * that snapshot into a new database file.
 */
import Database from 'better-sqlite3';
import { StoreError, status } from '../../errors.js';
import type { SnapshotCopy } from '../snapshot.js';

export function sqliteSnapshot(path: string): (destPath: string) => Promise<SnapshotCopy> {
  return async (destPath) => {
    if (path === ':memory:' || path === '') {
      throw new StoreError(status.FAILED_PRECONDITION, 'an in-memory store cannot be backed up');
    }
    const reader = new Database(path, { readonly: true, fileMustExist: true });
    try {
      reader.exec('BEGIN');
      // The first read starts the read transaction: from here on it sees exactly this state.
      reader.prepare('SELECT count(*) FROM sqlite_schema').get();
    } catch (err) {
      reader.close();
      throw err;
    }
    return {
      finish: async () => {
        try {
          await reader.backup(destPath);
        } finally {
          reader.close();
        }
      },
    };
  };
}
