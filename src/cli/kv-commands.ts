/**
 * `buffdb kv …`: works on the KV store file directly, through the same store layer (and so the
 * same rules and errors) as the gRPC Kv service. Loaded only when a kv command runs.
 */
import type { EqualityMode } from '../store/equality.js';
import type { KvStore } from '../store/kv/kv-store.js';
import { openKvStore, resolveBackend } from '../store/open-store.js';
import { writeOutput } from './binary-io.js';
import { CliError, EXIT } from './exit-codes.js';

export interface StoreTarget {
  store: string;
  backend: string;
}

/** Opens a store, runs `work`, and always closes the store so every write is committed. */
export async function withStore<S extends { close(): Promise<void> }, T>(
  label: string,
  target: StoreTarget,
  open: (target: StoreTarget) => Promise<S>,
  work: (store: S) => Promise<T>,
): Promise<T> {
  let store: S;
  try {
    store = await open(target);
  } catch (err) {
    throw new CliError(EXIT.FAILURE, `cannot open ${label} store ${target.store}: ${(err as Error).message}`);
  }
  let result: T;
  try {
    result = await work(store);
  } catch (err) {
    await store.close().catch(() => {});
    throw err;
  }
  await store.close();
  return result;
}

function withKv<T>(target: StoreTarget, work: (kv: KvStore) => Promise<T>): Promise<T> {
  return withStore(
    'KV',
    target,
    async ({ backend, store }) => openKvStore(await resolveBackend(backend), store, { background: false }),
    work,
  );
}

/**
 * Reads every key in one batch (one consistent snapshot). Rejections are kept per key so callers
 * can report the first one in argument order, as the gRPC stream would.
 */
function readAll(kv: KvStore, keys: string[]): Promise<PromiseSettledResult<string>[]> {
  return Promise.allSettled(keys.map((key) => kv.getValue(key)));
}

/** Values in order, NUL-separated; a newline after them only for a terminal, so scripts get the exact bytes. */
export async function kvGet(target: StoreTarget, keys: string[]): Promise<void> {
  const values = await withKv(target, async (kv) => {
    const results = await readAll(kv, keys);
    return results.map((r) => {
      if (r.status === 'rejected') throw r.reason;
      return r.value;
    });
  });
  const text = values.join('\0') + (process.stdout.isTTY ? '\n' : '');
  await writeOutput(Buffer.from(text, 'utf8'));
}

export async function kvSet(target: StoreTarget, key: string, value: string): Promise<void> {
  await withKv(target, (kv) => kv.setValue(key, value));
}

export async function kvDelete(target: StoreTarget, key: string): Promise<void> {
  await withKv(target, (kv) => kv.deleteKey(key));
}

/** True if the comparison holds. A missing key is NOT_FOUND unless the answer was already known before it. */
export async function kvCompare(target: StoreTarget, keys: string[], mode: EqualityMode): Promise<boolean> {
  return withKv(target, async (kv) => {
    // Loaded here: it pulls in node:crypto, which plain get/set do not need.
    const { EqualityCheck } = await import('../store/equality.js');
    const check = new EqualityCheck(mode);
    for (const r of await readAll(kv, keys)) {
      if (r.status === 'rejected') throw r.reason;
      if (check.add(r.value) === false) return false;
    }
    return check.finish();
  });
}
