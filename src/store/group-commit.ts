/**
 * Group commit: every operation that arrives before the next event-loop turn — from any stream —
 * runs in one engine batch (one transaction, one fsync), and its result is released only after
 * that batch commits. So an acknowledgement always means "committed", and a thousand small writes
 * cost one commit instead of a thousand.
 */
import type { StoreEngine } from '../backends/backend.js';
import { OutcomeUnknownError, StoreError, shuttingDown } from '../errors.js';

/**
 * The ordered sequence of operations of one request stream. Once one of its operations fails,
 * the later ones are not applied (the stream ends at the failure).
 */
export class Sequence {
  failed = false;
}

export type Done<R> = (err: StoreError | null, result?: R) => void;

/** An answer target that is an object, not a closure (serveBidi's per-request slot). */
export interface Settle<R> {
  settle(err: StoreError | null, result?: R): void;
}

/** Where an operation's answer goes: a callback, or an object answered through `settle`. */
export type Reply<R> = Done<R> | Settle<R>;

/** Answers `reply`. */
export function settle<R>(reply: Reply<R>, err: StoreError | null, result?: R): void {
  if (typeof reply === 'function') reply(err, result);
  else reply.settle(err, result);
}

/**
 * One queued operation. Answered through `done`, or — for the promise form, which saves a closure
 * per operation — through `resolve`/`reject`.
 */
interface Job<Ops> {
  /** Called as run(ops, key, arg): keyed jobs need no closure of their own (see submitKeyed). */
  run: (ops: Ops, key: string | undefined, arg: unknown) => unknown;
  done: Reply<unknown> | undefined;
  resolve: ((value: unknown) => void) | undefined;
  reject: ((err: StoreError) => void) | undefined;
  seq: Sequence | undefined;
  /** Set for exclusive() jobs: run alone, between batches. */
  exclusive: (() => Promise<unknown>) | undefined;
  /** A key the job reads (a hint for engines that fetch a batch's keys at once). */
  key: string | undefined;
  /** The keys a group job reads (the same hint; see submitGroup). */
  keys: readonly string[] | undefined;
  /** submitKeyed()'s argument for `run`. */
  arg: unknown;
}

function answer<Ops>(job: Job<Ops>, err: StoreError | null, result?: unknown): void {
  if (job.done) settle(job.done, err, result);
  else if (err) job.reject!(err);
  else job.resolve!(result);
}

/** Operations in `jobs`: one per job, a group job's keys each. */
function operationsOf<Ops>(jobs: Job<Ops>[]): number {
  let n = 0;
  for (const job of jobs) n += job.keys === undefined ? 1 : job.keys.length;
  return n;
}

/** Marks jobs whose sequence already failed: never applied, never answered. */
const SKIPPED = Symbol('skipped');

export class GroupCommitter<Ops> {
  private pending: Job<Ops>[] = [];
  private scheduled = false;
  private running = false;
  private idleWaiters: (() => void)[] = [];
  private closed = false;
  /** exclusive() jobs queued: only then are batches split around them. */
  private exclusiveQueued = 0;
  private jobsQueued = 0;
  /**
   * Observer (metrics): called after each committed batch with its size (operations: a group job
   * counts its keys) and seconds taken.
   */
  onBatch: ((operations: number, seconds: number) => void) | undefined;

  constructor(readonly engine: StoreEngine<Ops>) {}

  /** Queues `run`; `done` is called after the batch holding it has committed (or failed). */
  submit<R>(run: (ops: Ops) => R | Promise<R>, done: Reply<R>, seq?: Sequence, key?: string): void {
    this.queueDone(run, key, undefined, done as Reply<unknown>, seq);
  }

  /**
   * submit() for the per-message operations (a Get, a Set): `run(ops, key, arg)`, so the caller
   * allocates no closure per operation. `key` is also the read hint.
   */
  submitKeyed<R, A>(
    run: (ops: Ops, key: string, arg: A) => R | Promise<R>,
    key: string,
    arg: A,
    done: Reply<R>,
    seq?: Sequence,
  ): void {
    this.queueDone(run as Job<Ops>['run'], key, arg, done as Reply<unknown>, seq);
  }

  /**
   * One job for many operations of one kind (a stream's queued Gets): `run(ops, undefined, arg)`.
   * `keys` is the hint; the caller may add to it (and to `arg`) until `run` is called.
   */
  submitGroup<R, A>(
    run: (ops: Ops, key: undefined, arg: A) => R | Promise<R>,
    keys: readonly string[],
    arg: A,
    done: Reply<R>,
    seq?: Sequence,
  ): void {
    this.queueDone(run as Job<Ops>['run'], undefined, arg, done as Reply<unknown>, seq, keys);
  }

  /** Promise form of submit, for callers that do one thing at a time (CLI, library). */
  run<R>(run: (ops: Ops) => R | Promise<R>, seq?: Sequence, key?: string): Promise<R> {
    return this.queuePromise(run, key, undefined, seq);
  }

  /** Promise form of submitKeyed. */
  runKeyed<R, A>(run: (ops: Ops, key: string, arg: A) => R | Promise<R>, key: string, arg: A): Promise<R> {
    return this.queuePromise(run as Job<Ops>['run'], key, arg, undefined);
  }

  private queueDone(
    run: Job<Ops>['run'],
    key: string | undefined,
    arg: unknown,
    done: Reply<unknown>,
    seq: Sequence | undefined,
    keys?: readonly string[],
  ): void {
    if (this.closed) {
      settle(done, shuttingDown());
      return;
    }
    this.enqueue({ run, done, resolve: undefined, reject: undefined, seq, exclusive: undefined, key, keys, arg });
  }

  private queuePromise<R>(
    run: Job<Ops>['run'],
    key: string | undefined,
    arg: unknown,
    seq: Sequence | undefined,
  ): Promise<R> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(shuttingDown());
        return;
      }
      const answered = resolve as (value: unknown) => void;
      this.enqueue({
        run,
        done: undefined,
        resolve: answered,
        reject,
        seq,
        exclusive: undefined,
        key,
        keys: undefined,
        arg,
      });
    });
  }

  /**
   * Runs `fn` between two batches: what was queued before it is committed first, and no batch
   * starts until `fn` resolves. Online backup fixes its point in time here (src/backup).
   */
  exclusive<T>(fn: () => Promise<T>): Promise<T> {
    return new Promise((resolve, reject) => {
      if (this.closed) {
        reject(shuttingDown());
        return;
      }
      this.exclusiveQueued++;
      const run = (): never => {
        throw new Error('internal error: an exclusive job ran inside a batch');
      };
      this.enqueue({
        run,
        done: undefined,
        resolve: resolve as (v: unknown) => void,
        reject,
        seq: undefined,
        exclusive: fn,
        key: undefined,
        keys: undefined,
        arg: undefined,
      });
    });
  }

  /** Jobs queued so far: unchanged since a job was queued means it is still the last one. */
  get queued(): number {
    return this.jobsQueued;
  }

  private enqueue(job: Job<Ops>): void {
    this.jobsQueued++;
    this.pending.push(job);
    if (!this.scheduled && !this.running) {
      this.scheduled = true;
      setImmediate(this.flush);
    }
  }

  /** Resolves once everything queued so far has been committed and answered. */
  idle(): Promise<void> {
    if (!this.running && !this.scheduled && this.pending.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Refuses new work; resolves when queued work is done. */
  async drainAndClose(): Promise<void> {
    await this.idle();
    this.closed = true;
  }

  private readonly flush = async (): Promise<void> => {
    this.scheduled = false;
    this.running = true;
    try {
      while (this.pending.length > 0) {
        const jobs = this.pending;
        this.pending = [];
        if (this.exclusiveQueued === 0) await this.runBatch(jobs);
        else await this.runAroundExclusive(jobs);
      }
    } finally {
      this.running = false;
      for (const w of this.idleWaiters.splice(0)) w();
    }
  };

  /** Batches the jobs before and after each exclusive job; runs the exclusive ones alone. */
  private async runAroundExclusive(jobs: Job<Ops>[]): Promise<void> {
    let start = 0;
    for (let i = 0; i < jobs.length; i++) {
      const job = jobs[i]!;
      if (!job.exclusive) continue;
      if (i > start) await this.runBatch(jobs.slice(start, i));
      start = i + 1;
      this.exclusiveQueued--;
      try {
        job.resolve!(await job.exclusive());
      } catch (err) {
        job.reject!(this.engine.mapError(err));
      }
    }
    if (start < jobs.length) await this.runBatch(jobs.slice(start));
  }

  private async runBatch(jobs: Job<Ops>[]): Promise<void> {
    const results: unknown[] = new Array(jobs.length);
    // Allocated only when something fails (the common batch has no errors).
    let errors: (StoreError | undefined)[] | undefined;
    const started = this.onBatch ? performance.now() : 0;
    let keys: string[] | undefined;
    for (const job of jobs) {
      if (job.key !== undefined) {
        keys ??= [];
        keys.push(job.key);
      } else if (job.keys !== undefined) {
        keys ??= [];
        for (const key of job.keys) keys.push(key);
      }
    }
    try {
      await this.engine.batch(async (ops) => {
        // An engine may run this again (a serialization failure): start each attempt afresh.
        errors = undefined;
        // Sequences that fail inside this batch; applied to the Sequence only once it commits.
        let failedHere: Set<Sequence> | undefined;
        for (let i = 0; i < jobs.length; i++) {
          const job = jobs[i]!;
          if (job.seq && (job.seq.failed || failedHere?.has(job.seq))) {
            results[i] = SKIPPED;
            continue;
          }
          try {
            const r = job.run(ops, job.key, job.arg);
            results[i] = r instanceof Promise ? await r : r;
          } catch (err) {
            // A buffdb error (NOT_FOUND, …) has changed nothing: the batch goes on without it.
            // An engine error may have left the transaction half-done: abandon the batch.
            if (!(err instanceof StoreError)) throw err;
            errors ??= new Array(jobs.length);
            errors[i] = err;
            if (job.seq) {
              failedHere ??= new Set();
              failedHere.add(job.seq);
            }
          }
        }
      }, keys);
    } catch (err) {
      // Committed or not, nobody knows (the database went away mid-COMMIT): running the jobs
      // again could apply them twice, so each gets the error.
      if (err instanceof OutcomeUnknownError) {
        for (const job of jobs) {
          if (job.seq?.failed) continue;
          if (job.seq) job.seq.failed = true;
          answer(job, err);
        }
        return;
      }
      // The batch did not commit. Run each job on its own so one bad operation costs only itself
      // (and the rest of its own stream), never its neighbours.
      if (jobs.length > 1) {
        for (const job of jobs) await this.runBatch([job]);
        return;
      }
      const job = jobs[0]!;
      if (job.seq?.failed) return;
      if (job.seq) job.seq.failed = true;
      answer(job, this.engine.mapError(err));
      return;
    }
    this.onBatch?.(operationsOf(jobs), (performance.now() - started) / 1000);
    for (let i = 0; i < jobs.length; i++) {
      if (results[i] === SKIPPED) continue;
      const job = jobs[i]!;
      const err = errors?.[i];
      if (err) {
        if (job.seq) job.seq.failed = true;
        answer(job, err);
      } else {
        answer(job, null, results[i]);
      }
    }
  }
}
