/**
 * Commit logs kept in the BLOB store itself (its `meta` map, under `txlog/NAME`), for stores that
 * are databases — several servers may share them, so there is no file beside the store. A log is
 * written in the same BLOB batch as the transaction's BLOB writes, so it exists exactly when they
 * are committed, and it holds only the KV part. Each log has its own marker in the KV store's meta
 * map, written with the KV part: commits of several servers may interleave, so one "last applied"
 * key would not tell which logs are done.
 */
import type { MaybePromise } from '../../backends/backend.js';
import type { BlobStore } from '../blob/blob-store.js';
import type { KvStore } from '../kv/kv-store.js';
import type { CommitLog, LogEntry, WriteSet } from './commit-log.js';

const PREFIX = Buffer.from('txlog/');
const keyOf = (name: string): Buffer => Buffer.concat([PREFIX, Buffer.from(name)]);
/** Just past every key that starts with PREFIX. */
const PREFIX_END = Buffer.concat([PREFIX.subarray(0, -1), Buffer.of(PREFIX[PREFIX.length - 1]! + 1)]);

export class StoreCommitLog implements CommitLog {
  constructor(
    private readonly kv: KvStore,
    private readonly blob: BlobStore,
  ) {}

  nameFor(txId: string): string {
    return `${Date.now().toString().padStart(15, '0')}-${txId}`;
  }

  write(ops: Parameters<CommitLog['write']>[0], name: string, _txId: string, writes: WriteSet): MaybePromise<void> {
    return ops.maps.put('meta', keyOf(name), Buffer.from(JSON.stringify(writes.kv)));
  }

  async remove(name: string): Promise<void> {
    await this.blob.committer.run((ops) => ops.maps.delete('meta', keyOf(name)));
    await this.kv.committer.run((b) => b.ops.maps.delete('meta', this.marker(name)));
  }

  /** The log holds only the KV part already. */
  keepKvPart(): void {}

  describe(name: string): string {
    return `the BLOB store's meta map (txlog/${name})`;
  }

  async pending(): Promise<LogEntry[]> {
    const rows = await this.blob.committer.run((ops) =>
      ops.maps.range('meta', { start: PREFIX, end: PREFIX_END, limit: Number.MAX_SAFE_INTEGER, reverse: false }),
    );
    return rows.map(([key, value]) => ({
      name: key.subarray(PREFIX.length).toString(),
      writes: { kv: JSON.parse(value.toString()) as WriteSet['kv'], blob: [] },
    }));
  }

  marker(name: string): Buffer {
    return keyOf(name);
  }
}
