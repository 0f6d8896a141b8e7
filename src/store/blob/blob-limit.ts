/**
 * The largest blob a backend stores (its `maxBlobBytes` capability), checked here for every way a
 * blob is written: Store, Update, and Upload (at its header when it declares a size, else as soon
 * as the bytes received pass the limit).
 */
import type { Backend } from '../../backends/backend.js';
import { resourceExhausted, type StoreError } from '../../errors.js';

export interface BlobLimit {
  /** The backend's name, for the message. */
  backend: string;
  bytes: number;
}

/** A backend's limit, or undefined when it has none. */
export function blobLimitOf(backend: Pick<Backend, 'name' | 'capabilities'>): BlobLimit | undefined {
  const bytes = backend.capabilities.maxBlobBytes;
  return bytes === null ? undefined : { backend: backend.name, bytes };
}

const MiB = 1024 * 1024;
const describe = (n: number): string => (n % MiB === 0 ? `${n / MiB} MiB` : `${n} bytes`);

/** RESOURCE_EXHAUSTED naming the limit; `what` says how large the blob is (or how far it got). */
export function blobTooLarge(limit: BlobLimit, what: string): StoreError {
  return resourceExhausted(
    `the ${limit.backend} backend stores blobs of at most ${describe(limit.bytes)} (${what}); nothing was stored`,
  );
}

/** Throws when a blob of `size` bytes is over the limit. */
export function checkBlobSize(limit: BlobLimit | undefined, size: number): void {
  if (limit !== undefined && size > limit.bytes) throw blobTooLarge(limit, `this one is ${size} bytes`);
}
