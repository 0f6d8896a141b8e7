/**
 * buffdb Get, and Gets queued together: a stream's Gets sent one after another (nothing else
 * queued in between) join one job, which reads them in order inside the batch and answers them in
 * order after it. One job, one answer dispatch and one key-hint entry list per
 * group instead of per Get; what each Get is answered (its value, NOT_FOUND, FAILED_PRECONDITION,
 * the stream ending at its first failure) is what it would be as a job of its own.
 */

import { isUtf8 } from 'node:buffer';
import type { KvRecord, MaybePromise } from '../../backends/backend.js';
import { failedPrecondition, keyNotFound, StoreError } from '../../errors.js';
import type { GroupCommitter, Reply, Sequence } from '../group-commit.js';
import { settle } from '../group-commit.js';
import type { MvccBatch } from './mvcc-batch.js';

export function utf8Value(record: KvRecord, key: string): string {
  if (!isUtf8(record.value)) {
    throw failedPrecondition(
      `the value of key ${JSON.stringify(key)} is not UTF-8 text (it was written as bytes through the etcd API); ` +
        'read it with etcd Range',
    );
  }
  return record.value.toString('utf8');
}

/** A buffdb Get's answer: the value as text, NOT_FOUND when the key is missing. */
function valueText(record: KvRecord | undefined, key: string): string {
  if (record === undefined) throw keyNotFound(key);
  return utf8Value(record, key);
}

/** String.prototype.isWellFormed (Node 20; not in the ES2022 lib): no lone surrogates. */
type WellFormedCheck = string & { isWellFormed(): boolean };

/** buffdb Get: the value as text. */
export function readValue(b: MvccBatch, key: string): MaybePromise<string> {
  // A well-formed string is bound as itself (its UTF-8 bytes are the key's): no Buffer per Get.
  if (b.ops.getText && (key as WellFormedCheck).isWellFormed()) {
    const text = b.ops.getText(key);
    if (text instanceof Promise) return text.then((t) => (t === null ? readRecordValue(b, key) : known(t, key)));
    return text === null ? readRecordValue(b, key) : known(text, key);
  }
  return readRecordValue(b, key);
}

/** The engine read the value as text (`undefined`: no such key). */
function known(text: string | undefined, key: string): string {
  if (text === undefined) throw keyNotFound(key);
  return text;
}

function readRecordValue(b: MvccBatch, key: string): MaybePromise<string> {
  const record = b.ops.get(Buffer.from(key, 'utf8'));
  return record instanceof Promise ? record.then((r) => valueText(r, key)) : valueText(record, key);
}

type Resolve = (value: string) => void;
type Reject = (err: StoreError) => void;

/**
 * Gets queued as one job. With a Sequence (a request stream), the first failure ends the group as
 * it ends the stream: the Gets before it are answered, it gets the error, the later ones are never
 * answered (as jobs of a failed sequence are not). Without one (independent callers), each Get has
 * its own answer, errors included.
 */
class GetGroup {
  // Made with their first Get (a group of one costs little: Gets of streams that interleave).
  readonly keys: string[];
  /** Callback or Settle answers; for the promise form, the resolve function (its reject in `rejects`). */
  readonly replies: (Reply<string> | Resolve)[];
  /** Groups without a Sequence: the reject function of each Get (promise form), or undefined. */
  readonly rejects: (Reject | undefined)[] | undefined;
  readonly values: string[] = [];
  /** Groups without a Sequence: the Gets that failed with a StoreError. */
  errors: (StoreError | undefined)[] | undefined = undefined;
  /** Not run yet: later Gets may join. */
  open = true;
  /** The Get whose engine error (or, with a Sequence, StoreError) failed the job; -1: none. */
  failedAt = -1;

  constructor(
    private readonly owner: GetGroups,
    readonly seq: Sequence | undefined,
    key: string,
    reply: Reply<string> | Resolve,
    reject: Reject | undefined,
  ) {
    this.keys = [key];
    this.replies = [reply];
    this.rejects = seq === undefined ? [reject] : undefined;
  }

  push(key: string, reply: Reply<string> | Resolve, reject: Reject | undefined): void {
    this.keys.push(key);
    this.replies.push(reply);
    this.rejects?.push(reject);
  }

  /** No Get joins it any more; the store lets it go (it holds values and answer targets until answered). */
  private close(): void {
    this.open = false;
    this.owner.closed(this);
  }

  /** Reads every Get (the committer's job; an engine may run it again: each run starts afresh). */
  read(b: MvccBatch): MaybePromise<GetGroup> {
    this.close();
    this.failedAt = -1;
    this.errors = undefined;
    const keys = this.keys;
    for (let i = 0; i < keys.length; i++) {
      let value: MaybePromise<string>;
      try {
        value = readValue(b, keys[i]!);
      } catch (err) {
        this.failed(i, err);
        continue;
      }
      if (value instanceof Promise) return this.readAsync(b, i, value);
      this.values[i] = value;
    }
    return this;
  }

  private async readAsync(b: MvccBatch, from: number, first: Promise<string>): Promise<GetGroup> {
    const keys = this.keys;
    for (let i = from; i < keys.length; i++) {
      try {
        this.values[i] = await (i === from ? first : readValue(b, keys[i]!));
      } catch (err) {
        this.failed(i, err);
      }
    }
    return this;
  }

  /** A Get failed: kept as its answer (no Sequence, a StoreError), else the job fails with it. */
  private failed(i: number, err: unknown): void {
    if (this.seq === undefined && err instanceof StoreError) {
      this.errors ??= [];
      this.errors[i] = err;
      return;
    }
    this.failedAt = i;
    throw err;
  }

  /** The committer's answer, after the batch: each Get's, in order. */
  settle(err: StoreError | null): void {
    this.close();
    const n = this.keys.length;
    // A failure not raised by one of the Gets (the commit's): the first Get of a stream gets it
    // (its stream ends there), every independent Get gets it.
    const end = err === null ? n : this.failedAt >= 0 ? this.failedAt : this.seq ? 0 : n;
    for (let i = 0; i < end; i++) {
      const failure = this.errors?.[i];
      if (failure) this.answer(i, failure);
      else this.answer(i, null, this.values[i]);
    }
    if (err === null) return;
    if (this.failedAt < 0) {
      for (let i = end; i < n; i++) this.answer(i, err);
      return;
    }
    this.answer(this.failedAt, err);
    // Independent Gets after an engine error run again without it (as jobs of their own would).
    if (this.seq === undefined) {
      for (let i = this.failedAt + 1; i < n; i++)
        this.owner.requeue(this.keys[i]!, this.replies[i]!, this.rejects?.[i]);
    }
  }

  private answer(i: number, err: StoreError | null, value?: string): void {
    const reject = this.rejects?.[i];
    if (reject === undefined) settle(this.replies[i] as Reply<string>, err, value);
    else if (err) reject(err);
    else (this.replies[i] as Resolve)(value!);
  }
}

function readGroup(b: MvccBatch, _key: string | undefined, group: GetGroup): MaybePromise<GetGroup> {
  return group.read(b);
}

/**
 * Groups a store's Gets: a Get joins the group queued last when nothing else was queued since and
 * it has the same Sequence (or none), so it runs exactly where a job of its own would.
 */
export class GetGroups {
  private last: GetGroup | undefined;
  /** The committer's job count once `last` was queued. */
  private lastAt = -1;

  constructor(private readonly committer: GroupCommitter<MvccBatch>) {}

  get(key: string, done: Reply<string>, seq?: Sequence): void {
    this.add(key, done, undefined, seq);
  }

  /** The promise form (no Sequence). */
  getValue(key: string): Promise<string> {
    return new Promise((resolve, reject) => this.add(key, resolve, reject, undefined));
  }

  closed(group: GetGroup): void {
    if (this.last === group) this.last = undefined;
  }

  requeue(key: string, reply: Reply<string> | Resolve, reject: Reject | undefined): void {
    this.add(key, reply, reject, undefined);
  }

  private add(
    key: string,
    reply: Reply<string> | Resolve,
    reject: Reject | undefined,
    seq: Sequence | undefined,
  ): void {
    const last = this.last;
    if (last?.open && last.seq === seq && this.committer.queued === this.lastAt) {
      last.push(key, reply, reject);
      return;
    }
    const group = new GetGroup(this, seq, key, reply, reject);
    this.last = group;
    // Queued once its first Get is in it (a closed committer answers at once).
    this.committer.submitGroup(readGroup, group.keys, group, group, seq);
    this.lastAt = this.committer.queued;
  }
}
