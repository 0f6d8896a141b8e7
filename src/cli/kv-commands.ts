/**
 * `buffdb kv …`: on the KV store file directly, through the same store layer (and so the same
 * rules and errors) as the gRPC Kv service — or on a running server with --addr (store-access.ts).
 * Loaded only when a kv command runs.
 */
import type { EqualityMode } from '../store/equality.js';
import { writeOutput } from './binary-io.js';
import { type StoreTarget, withKv } from './store-access.js';

export type { StoreTarget };

/** Values in order, NUL-separated; a newline after them only for a terminal, so scripts get the exact bytes. */
export async function kvGet(target: StoreTarget, keys: string[]): Promise<void> {
  const values = await withKv(target, (kv) => kv.get(keys));
  const text = values.join('\0') + (process.stdout.isTTY ? '\n' : '');
  await writeOutput(Buffer.from(text, 'utf8'));
}

export async function kvSet(target: StoreTarget, key: string, value: string): Promise<void> {
  await withKv(target, (kv) => kv.set(key, value));
}

export async function kvDelete(target: StoreTarget, key: string): Promise<void> {
  await withKv(target, (kv) => kv.delete(key));
}

/** True if the comparison holds. A missing key is NOT_FOUND unless the answer was already known before it. */
export async function kvCompare(target: StoreTarget, keys: string[], mode: EqualityMode): Promise<boolean> {
  return withKv(target, (kv) => kv.compare(keys, mode));
}
