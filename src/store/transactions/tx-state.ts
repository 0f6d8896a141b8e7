/** The state of one open transaction, and the words for how one can end. */
import type { EventEmitter } from 'node:events';
import type { KvRecord } from '../../backends/backend.js';
import { aborted, failedPrecondition, type StoreError } from '../../errors.js';
import type { StoredBlob } from '../blob/blob-store.js';

export type Ending = 'committed' | 'rolled back' | 'expired' | 'disconnected' | 'aborted' | 'failed' | 'closed';

export interface BlobWrite {
  /** null: deleted. */
  record: StoredBlob | null;
  /** Stored by this transaction under a reserved id (not in the store yet). */
  isNew: boolean;
  /** An upload's state in the `upload` map, deleted when the commit makes its data live. */
  uploadState?: Buffer | undefined;
}

export class Tx {
  state: 'open' | 'committing' = 'open';
  timer: NodeJS.Timeout | undefined;
  /** Operations on this transaction run one after another, in arrival order. */
  tail: Promise<void> = Promise.resolve();
  /** The committed record seen at first touch (undefined: absent) — validated at commit. */
  readonly kvSeen = new Map<string, KvRecord | undefined>();
  /** null: deleted. */
  readonly kvWrites = new Map<string, string | null>();
  readonly blobSeen = new Map<number, StoredBlob | undefined>();
  readonly blobWrites = new Map<number, BlobWrite>();
  connection: EventEmitter | undefined;
  /** Set once the connection that began it has closed: rolls it back unless the id is used again. */
  orphanTimer: NodeJS.Timeout | undefined;

  constructor(
    readonly id: string,
    readonly readOnly: boolean,
    readonly timeoutMs: number,
  ) {}

  get touchesKv(): boolean {
    return this.kvSeen.size > 0 || this.kvWrites.size > 0;
  }

  get touchesBlob(): boolean {
    return this.blobSeen.size > 0 || this.blobWrites.size > 0;
  }

  clear(): void {
    this.kvWrites.clear();
    this.blobWrites.clear();
    this.kvSeen.clear();
    this.blobSeen.clear();
  }
}

/** Why a finished transaction id can no longer be used. */
export function endedError(id: string, ending: Ending | undefined, timeoutMs: number): StoreError {
  const q = JSON.stringify(id);
  switch (ending) {
    case undefined:
      return failedPrecondition(
        `unknown transaction id ${q}: it was not begun on this server (or finished long ago); begin one with BeginTransaction`,
      );
    case 'committed':
      return failedPrecondition(`transaction ${q} is already committed; begin a new one for more work`);
    case 'rolled back':
      return failedPrecondition(`transaction ${q} was rolled back; begin a new one`);
    case 'expired':
      return failedPrecondition(
        `transaction ${q} expired: it was not committed within its timeout of ${timeoutMs} ms and ` +
          'was rolled back; begin a new one (BeginTransaction timeout_ms sets the limit)',
      );
    case 'disconnected':
      return failedPrecondition(`transaction ${q} was rolled back because the client that began it disconnected`);
    case 'aborted':
      return failedPrecondition(`transaction ${q} was aborted by a conflicting write and rolled back; begin a new one`);
    case 'failed':
      return failedPrecondition(`transaction ${q} failed to commit; begin a new one`);
    case 'closed':
      return failedPrecondition(`transaction ${q} was rolled back because the server shut down`);
  }
}

export const conflict = (txId: string, what: string): StoreError =>
  aborted(
    `transaction ${JSON.stringify(txId)} aborted: ${what} was changed by another writer after this transaction ` +
      'read or wrote it; nothing of the transaction was applied — retry it',
  );

/** Whether a blob is unchanged: same metadata, and the same chunks or the same inline bytes. */
export function sameBlob(a: StoredBlob | undefined, b: StoredBlob | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  if (a.metadata !== b.metadata) return false;
  if (a.large || b.large) return a.large?.dataId === b.large?.dataId;
  const x = a.data!;
  const y = b.data!;
  return (
    x.byteLength === y.byteLength &&
    Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength))
  );
}

/**
 * The value `read` gives the first time `key` is touched, remembered in `seen`: later reads in the
 * transaction see the same committed value (and a concurrent first read keeps the earlier one).
 */
export async function firstSeen<K, V>(seen: Map<K, V>, key: K, read: () => Promise<V>): Promise<V> {
  if (seen.has(key)) return seen.get(key)!;
  const value = await read();
  if (!seen.has(key)) seen.set(key, value);
  return seen.get(key)!;
}
