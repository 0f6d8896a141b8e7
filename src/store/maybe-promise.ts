import type { MaybePromise } from '../backends/backend.js';

/** Applies `f` without a microtask hop when the engine answered synchronously (SQLite, LMDB). */
export function then<T, R>(value: MaybePromise<T>, f: (v: T) => MaybePromise<R>): MaybePromise<R> {
  return value instanceof Promise ? value.then(f) : f(value);
}
