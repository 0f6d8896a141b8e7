/**
 * `buffdb blob …`: on the BLOB store file directly, through the same store layer (and so the same
 * rules and errors) as the gRPC Blob service — or on a running server with --addr
 * (store-access.ts). Loaded only when a blob command runs.
 *
 * Data is streamed both ways, so memory stays flat whatever the blob's size: input of more than
 * INLINE_MAX bytes goes through Upload (the blob is stored in chunks), smaller input through
 * Store / Update as one value, as before; output is read through Download's ranged reads.
 */
import type { EqualityMode } from '../store/equality.js';
import { inputChunks, peekInput, writeChunks, writeOutput } from './binary-io.js';
import { type StoreTarget, type StreamedWrite, withBlob } from './store-access.js';

export type GetPart = 'data' | 'metadata' | 'all';
export type UpdatePart = 'data' | 'metadata' | 'all';

/** Input up to this size is stored as one value (raw SQL sees it in the `blob` table's data column). */
export const INLINE_MAX = 16 * 1024 * 1024;

export interface ByteRange {
  offset: number;
  /** Undefined: to the end. */
  length: number | undefined;
}

/**
 * `data` (default): the bytes exactly. `metadata`: the metadata (nothing if null; a newline after
 * it only for a terminal). `all`: metadata, NUL, data — the original buffdb's layout. `range`: only
 * those bytes of the data (clamped to the blob; an offset past its end is an error).
 */
export async function blobGet(
  target: StoreTarget,
  id: bigint,
  part: GetPart,
  range: ByteRange = { offset: 0, length: undefined },
): Promise<void> {
  const label = `blob ${id}:`;
  const wantData = part !== 'metadata';
  await withBlob(target, async (blob) => {
    const served = await blob.read(id, wantData ? range.offset : 0, wantData ? range.length : 0);
    if (!wantData || served.length <= INLINE_MAX) {
      // Small: read it all, close the store, then write — a slow reader must not hold the store open.
      const parts: Buffer[] = [];
      for await (const chunk of served.chunks) parts.push(chunk);
      return async () => writeBlob(part, served.metadata, parts, served.length, label);
    }
    await writeBlob(part, served.metadata, served.chunks, served.length, label);
    return async () => {};
  }).then((write) => write());
}

async function writeBlob(
  part: GetPart,
  metadata: string | null,
  data: AsyncIterable<Buffer> | Buffer[],
  length: number,
  label: string,
): Promise<void> {
  if (part === 'metadata') {
    if (metadata !== null) await writeOutput(Buffer.from(metadata + (process.stdout.isTTY ? '\n' : '')));
    return;
  }
  if (part === 'all') await writeOutput(Buffer.from(`${metadata ?? ''}\0`));
  await writeChunks(data, length, label);
}

/**
 * Writes FILE (- = stdin) as a blob: one value when small, through Upload when large. Either way a
 * bad file or an interrupted pipe stores nothing (an upload that fails is discarded).
 */
async function writeFrom(target: StoreTarget, file: string, write: StreamedWrite): Promise<bigint | number> {
  const input = await inputChunks(file);
  const { whole, rest } = await peekInput(input.chunks, INLINE_MAX);
  return withBlob(target, async (blob) => {
    if (whole === undefined) return blob.upload(rest, write);
    if (write.id === undefined) return blob.store(whole, write.metadata);
    const { id, shouldUpdateMetadata, metadata } = write;
    await blob.update(id, { bytes: whole, shouldUpdateMetadata, metadata });
    return id;
  });
}

export async function blobStore(target: StoreTarget, file: string, metadata: string | undefined): Promise<void> {
  const id = await writeFrom(target, file, { metadata, shouldUpdateMetadata: false });
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
  if (part === 'metadata') {
    await withBlob(target, (blob) => blob.update(id, { shouldUpdateMetadata: true, metadata }));
    return;
  }
  await writeFrom(target, file!, { id, metadata, shouldUpdateMetadata: part === 'all' });
}

export async function blobDelete(target: StoreTarget, id: bigint): Promise<void> {
  await withBlob(target, (blob) => blob.delete(id));
}

/** One blob at a time, hashed as it comes, so comparing large blobs holds only one of them. */
export async function blobCompare(target: StoreTarget, ids: bigint[], mode: EqualityMode): Promise<boolean> {
  return withBlob(target, (blob) => blob.compare(ids, mode));
}
