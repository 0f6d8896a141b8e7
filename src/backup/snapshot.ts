/**
 * A consistent copy of both stores of a BuffDb at one point in time, taken while it keeps serving.
 *
 * The point in time is fixed with both stores' writes held between batches (GroupCommitter
 * .exclusive, KV first as transaction commits do, so the two never wait on each other): every
 * write acknowledged before the backup began is committed and in the copy, and no transaction is
 * half applied (a cross-store commit runs inside one KV batch). Then each engine's snapshot()
 * (src/backends/snapshot.ts) fixes or makes its copy; 'online' engines finish copying after
 * writes resume.
 */
import { mkdir, readdir, stat } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { snapshotsOf } from '../backends/snapshot.js';
import { StoreError, status } from '../errors.js';
import type { BuffDb } from '../store/buffdb.js';

export type StoreName = 'kv' | 'blob';

/** One file of a store copy: `name` is the path relative to the store path ('' = the store file itself). */
export interface SnapshotFile {
  store: StoreName;
  name: string;
  path: string;
  size: number;
}

export interface Snapshot {
  backend: string;
  files: SnapshotFile[];
}

/** The name of the store file inside each store's copy directory. */
const STORE_FILE = 'store';

async function listFiles(dir: string, store: StoreName): Promise<SnapshotFile[]> {
  const out: SnapshotFile[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of (await readdir(d, { withFileTypes: true })).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(d, entry.name);
      if (entry.isDirectory()) await walk(path);
      else if (entry.isFile()) {
        const name = relative(dir, path).split('\\').join('/').slice(STORE_FILE.length);
        // Lock files belong to the running engine, not to the data.
        if (name.endsWith('-lock') || name.endsWith('/LOCK')) continue;
        out.push({ store, name, path, size: (await stat(path)).size });
      }
    }
  };
  await walk(dir);
  return out;
}

/** Copies both stores of `db` into `dir` (which must be empty) at one point in time. */
export async function takeSnapshot(db: BuffDb, dir: string): Promise<Snapshot> {
  const kv = snapshotsOf(db.kv.engine);
  const blob = snapshotsOf(db.blob.engine);
  if (!db.backend.capabilities.snapshot || !kv || !blob) {
    throw new StoreError(
      status.UNIMPLEMENTED,
      `the ${db.backend.name} backend cannot make online backups; back its stores up with the engine's own tools`,
    );
  }
  const kvDir = join(dir, 'kv');
  const blobDir = join(dir, 'blob');
  await mkdir(kvDir, { recursive: true });
  await mkdir(blobDir, { recursive: true });
  const copies = await db.kv.committer.exclusive(() =>
    db.blob.committer.exclusive(async () => {
      const kvCopy = await kv.snapshot(join(kvDir, STORE_FILE));
      try {
        return [kvCopy, await blob.snapshot(join(blobDir, STORE_FILE))] as const;
      } catch (err) {
        await kvCopy.finish().catch(() => {});
        throw err;
      }
    }),
  );
  const finished = await Promise.allSettled(copies.map((c) => c.finish()));
  for (const f of finished) if (f.status === 'rejected') throw f.reason;
  return {
    backend: db.backend.name,
    files: [...(await listFiles(kvDir, 'kv')), ...(await listFiles(blobDir, 'blob'))],
  };
}
