/**
 * The commit log of transactions that write both stores: their final writes, written atomically
 * beside the KV store before the BLOB batch commits and removed once the KV batch has committed.
 * A log left by a crash is replayed when the stores next open, so such a commit lands entirely or
 * not at all. The KV batch also records the log's name (meta `txlog`), so a log whose KV part did
 * commit is not applied twice.
 */
import { closeSync, fsyncSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { BlobEngineOps, MaybePromise } from '../../backends/backend.js';
import type { StoredBlob } from '../blob/blob-store.js';
import { META } from '../kv/meta.js';

/** What a commit writes; also the commit log's content. */
export interface WriteSet {
  kv: [string, string | null][];
  /** [id, blob (null: delete), stored under a reserved id, upload state to delete] */
  blob: BlobWriteEntry[];
}

export type BlobWriteEntry = [id: number, blob: StoredBlob | null, isNew: boolean, uploadState: Buffer | undefined];

interface LoggedBlob {
  data?: string;
  metadata: string | null;
  large?: { dataId: number; size: number; sha256: string };
}

interface LogFile {
  version: 1;
  transactionId: string;
  kv: [string, string | null][];
  blob: [number, LoggedBlob | null, boolean, string | null][];
}

function toLogged(b: StoredBlob): LoggedBlob {
  return {
    metadata: b.metadata,
    ...(b.data ? { data: Buffer.from(b.data).toString('base64') } : {}),
    ...(b.large ? { large: { ...b.large, sha256: b.large.sha256.toString('hex') } } : {}),
  };
}

function fromLogged(b: LoggedBlob): StoredBlob {
  return {
    metadata: b.metadata,
    data: b.data === undefined ? undefined : Buffer.from(b.data, 'base64'),
    large: b.large && { ...b.large, sha256: Buffer.from(b.large.sha256, 'hex') },
  };
}

export interface LogEntry {
  /** The log's file name (also what the KV batch records as applied). */
  name: string;
  writes: WriteSet;
}

function removeFile(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // already gone
  }
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = openSync(dir, 'r');
    fsyncSync(fd);
  } catch {
    // Some platforms cannot fsync a directory; the rename is still atomic.
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

/**
 * Where commit logs live: files beside a file store (FileCommitLog), or the BLOB store itself for
 * stores that are databases (StoreCommitLog, commit-log-store.ts).
 */
export interface CommitLog {
  /** A fresh log name; one per commit, so a batch retried by the group committer rewrites the same log. */
  nameFor(txId: string): string;
  /** Writes the log, inside the BLOB batch that applies the transaction's BLOB writes. */
  write(ops: BlobEngineOps, name: string, txId: string, writes: WriteSet): MaybePromise<void>;
  /** Removes the log (and its marker) once both stores have committed. */
  remove(name: string): MaybePromise<void>;
  /** The BLOB part is committed but the KV part is not: keep only the KV part for the next open. */
  keepKvPart(name: string, txId: string, writes: WriteSet): MaybePromise<void>;
  /** Where the log is, for messages. */
  describe(name: string): string;
  /** The logs left behind, oldest first. */
  pending(): MaybePromise<LogEntry[]>;
  /** The key of the KV store's `meta` map that records "this log's KV part is applied" (value: the name). */
  marker(name: string): Buffer;
}

export class FileCommitLog implements CommitLog {
  private readonly dir: string;
  private readonly prefix: string;

  constructor(kvPath: string) {
    this.dir = dirname(kvPath);
    this.prefix = `${basename(kvPath)}.txlog-`;
  }

  /** A fresh log name; one per commit, so a batch retried by the group committer rewrites the same file. */
  nameFor(txId: string): string {
    return `${this.prefix}${Date.now().toString().padStart(15, '0')}-${txId}.json`;
  }

  /** Writes the log atomically (temp file, fsync, rename, fsync directory). */
  write(_ops: BlobEngineOps | undefined, name: string, txId: string, writes: WriteSet): void {
    const content: LogFile = {
      version: 1,
      transactionId: txId,
      kv: writes.kv,
      blob: writes.blob.map(([id, b, isNew, state]) => [id, b && toLogged(b), isNew, state?.toString('hex') ?? null]),
    };
    const target = join(this.dir, name);
    const tmp = `${target}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      writeSync(fd, JSON.stringify(content));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, target);
    syncDir(this.dir);
  }

  remove(name: string): void {
    removeFile(join(this.dir, name));
  }

  keepKvPart(name: string, txId: string, writes: WriteSet): void {
    this.write(undefined, name, txId, { kv: writes.kv, blob: [] });
  }

  describe(name: string): string {
    return join(this.dir, name);
  }

  /** One key for every log: commits through files run in one process, one at a time. */
  marker(): Buffer {
    return META.txlog;
  }

  /** The logs left behind, oldest first; temp files (commits that never started) are removed. */
  pending(): LogEntry[] {
    let names: string[];
    try {
      names = readdirSync(this.dir)
        .filter((n) => n.startsWith(this.prefix))
        .sort();
    } catch {
      return [];
    }
    const out: LogEntry[] = [];
    for (const name of names) {
      const file = join(this.dir, name);
      if (name.endsWith('.tmp')) {
        removeFile(file);
        continue;
      }
      let log: LogFile;
      try {
        log = JSON.parse(readFileSync(file, 'utf8')) as LogFile;
      } catch (err) {
        throw new Error(
          `the commit log ${file} is unreadable (${(err as Error).message}); ` +
            'it holds a committed transaction: restore it, or remove it to give that transaction up',
        );
      }
      out.push({
        name,
        writes: {
          kv: log.kv,
          blob: log.blob.map(
            ([id, b, isNew, state]): BlobWriteEntry => [
              id,
              b && fromLogged(b),
              isNew,
              state === null || state === undefined ? undefined : Buffer.from(state, 'hex'),
            ],
          ),
        },
      });
    }
    return out;
  }
}

/** For tests and tools: the commit logs pending beside `kvPath`. */
export function pendingCommitLogs(kvPath: string): string[] {
  try {
    const prefix = `${basename(kvPath)}.txlog-`;
    return readdirSync(dirname(kvPath)).filter((n) => n.startsWith(prefix));
  } catch {
    return [];
  }
}
