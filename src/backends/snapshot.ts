/**
 * Online backup, engine side: an engine that can copy itself at one point in time offers
 * `snapshot(destPath)`. The store calls it while it holds the engine's writes (inside a batch of
 * this engine, no other running), so the copy holds exactly the writes acknowledged before it.
 * The backend's capability `snapshot` says how long writes wait:
 * - 'online': snapshot() only fixes the point in time (a read transaction, an iterator) and
 *   `finish()` copies afterwards, while writes go on (SQLite, RocksDB);
 * - 'held': snapshot() makes the whole copy before it returns (LMDB, DuckDB).
 * The copy is a store at `destPath` in the backend's own layout (the file and whatever it keeps
 * beside it), so restoring it is putting the files in place.
 */

export type SnapshotMode = 'online' | 'held';

export interface SnapshotCopy {
  /** Completes the copy (for 'held' engines it is already complete). */
  finish(): Promise<void>;
}

export interface Snapshots {
  snapshot(destPath: string): Promise<SnapshotCopy>;
}

/** Gives `engine` its snapshot method (the one-line hook each backend adds). */
export function withSnapshots<E extends object>(engine: E, snapshot: (destPath: string) => Promise<SnapshotCopy>): E {
  return Object.assign(engine, { snapshot });
}

export function snapshotsOf(engine: unknown): Snapshots | undefined {
  const s = (engine as Partial<Snapshots> | undefined)?.snapshot;
  return typeof s === 'function' ? (engine as Snapshots) : undefined;
}

/** For 'held' engines: the copy is done when snapshot() resolves. */
export const DONE: SnapshotCopy = { finish: async () => {} };
