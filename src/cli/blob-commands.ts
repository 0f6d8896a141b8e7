/**
 * `buffdb blob …`: on the BLOB store file directly, through the same store layer (and so the same
 * rules and errors) as the gRPC Blob service — or on a running server with --addr
 * (store-access.ts). Loaded only when a blob command runs.
 */
import type { BlobUpdate } from '../store/blob/blob-store.js';
import type { EqualityMode } from '../store/equality.js';
import { readInput, writeOutput } from './binary-io.js';
import { type StoreTarget, withBlob } from './store-access.js';

export type GetPart = 'data' | 'metadata' | 'all';
export type UpdatePart = 'data' | 'metadata' | 'all';

/**
 * `data` (default): the bytes exactly. `metadata`: the metadata (nothing if null; a newline after
 * it only for a terminal). `all`: metadata, NUL, data — the original buffdb's layout.
 */
export async function blobGet(target: StoreTarget, id: bigint, part: GetPart): Promise<void> {
  // The store is closed before writing: a slow reader must not hold the store open.
  const record = await withBlob(target, (blob) => blob.get(id));
  if (part === 'data') {
    await writeOutput(record.data, `blob ${id}:`);
  } else if (part === 'metadata') {
    if (record.metadata !== null) await writeOutput(Buffer.from(record.metadata + (process.stdout.isTTY ? '\n' : '')));
  } else {
    await writeOutput(Buffer.from(`${record.metadata ?? ''}\0`));
    await writeOutput(record.data, `blob ${id}:`);
  }
}

/** Reads the input first, so a bad file or an interrupted pipe never touches the store. */
export async function blobStore(target: StoreTarget, file: string, metadata: string | undefined): Promise<void> {
  const bytes = await readInput(file);
  const id = await withBlob(target, (blob) => blob.store(bytes, metadata));
  // An id is a token for scripts; the newline is what `$(…)` strips.
  await writeOutput(Buffer.from(`${id}\n`));
}

export async function blobUpdate(
  target: StoreTarget,
  id: bigint,
  part: UpdatePart,
  file: string | undefined,
  metadata: string | undefined,
): Promise<void> {
  const update: BlobUpdate = { shouldUpdateMetadata: part !== 'data' };
  if (part !== 'metadata') update.bytes = await readInput(file!);
  if (part !== 'data') update.metadata = metadata;
  await withBlob(target, (blob) => blob.update(id, update));
}

export async function blobDelete(target: StoreTarget, id: bigint): Promise<void> {
  await withBlob(target, (blob) => blob.delete(id));
}

/** One blob at a time, hashed as it comes, so comparing large blobs holds only one of them. */
export async function blobCompare(target: StoreTarget, ids: bigint[], mode: EqualityMode): Promise<boolean> {
  return withBlob(target, (blob) => blob.compare(ids, mode));
}
