/**
 * RocksDB online backup. @nxtedition/rocksdb exposes no checkpoint, so the copy is logical: an
 * iterator created while the store holds its writes reads from an implicit RocksDB snapshot of
 * that moment; once writes resume, it is copied into a new database at `<dest>-rocksdb`, beside a
 * copy of the marker file — the layout the backend opens.
 */
import { copyFile } from 'node:fs/promises';
import type { SnapshotCopy } from '../snapshot.js';

interface Iterator {
  nextv(size: number): Promise<[Buffer, Buffer][]>;
  close(): Promise<void>;
}
interface Batch {
  put(key: Buffer, value: Buffer): void;
  write(options: { sync: boolean }): Promise<void>;
}
export interface SnapshotSource {
  iterator(options: { keyEncoding: 'buffer'; valueEncoding: 'buffer' }): Iterator;
}
interface Target {
  open(options: { createIfMissing: boolean }): Promise<void>;
  close(): Promise<void>;
  batch(): Batch;
}

/** Entries per write batch while copying (bounded memory). */
const CHUNK = 1000;

export function rocksdbSnapshot(
  db: SnapshotSource,
  markerPath: string,
  open: (location: string) => Target,
): (destPath: string) => Promise<SnapshotCopy> {
  return async (destPath) => {
    const iterator = db.iterator({ keyEncoding: 'buffer', valueEncoding: 'buffer' });
    return {
      finish: async () => {
        const target = open(`${destPath}-rocksdb`);
        try {
          await target.open({ createIfMissing: true });
          for (;;) {
            const entries = await iterator.nextv(CHUNK);
            if (entries.length === 0) break;
            const batch = target.batch();
            for (const [k, v] of entries) batch.put(k, v);
            await batch.write({ sync: false });
          }
        } finally {
          await iterator.close();
          await target.close();
        }
        await copyFile(markerPath, destPath);
      },
    };
  };
}
