/**
 * One native WriteBatch reused for every commit. A chained batch (`db.batch()`) allocates a
 * WriteBatch that grows to up to twice the batch's bytes and is freed only when V8 collects the
 * batch's JS wrapper; V8 does not see that memory, so the WriteBatches of 4 MiB upload batches
 * piled up until some collection came. Measured, a 300 MB `buffdb blob store` into a RocksDB
 * server: peak RSS 184–197 MiB with one batch reused, 212–234 MiB with a chained batch per commit.
 *
 * The binding's batch functions are what @nxtedition/rocksdb's own chained batch calls, but they
 * are not its documented API: they are looked up and checked here, and without them (another
 * version of the binding) commits use chained batches as before.
 */
import { createRequire } from 'node:module';
import type { ByteWrite } from '../byte-kv/engine.js';
import { asBuffer } from '../byte-kv/layout.js';

interface BatchBinding {
  batch_init(): unknown;
  batch_put(batch: unknown, key: Buffer, value: Buffer, options: object): void;
  batch_del(batch: unknown, key: Buffer, options: object): void;
  batch_write(db: unknown, batch: unknown, options: { sync: boolean }): void;
  batch_clear(batch: unknown): void;
}

const FUNCTIONS = ['batch_init', 'batch_put', 'batch_del', 'batch_write', 'batch_clear'] as const;
const NO_OPTIONS = {};

/** Writes `writes` atomically through one reused WriteBatch; undefined when the binding lacks what it needs. */
export function reusedBatchWriter(db: object): ((writes: Iterable<ByteWrite>, sync: boolean) => void) | undefined {
  let binding: Partial<BatchBinding>;
  try {
    binding = createRequire(import.meta.url)('@nxtedition/rocksdb/binding.js') as Partial<BatchBinding>;
  } catch {
    return undefined;
  }
  const context = Object.getOwnPropertySymbols(db).find((s) => s.description === 'context');
  if (context === undefined || FUNCTIONS.some((f) => typeof binding[f] !== 'function')) return undefined;
  const b = binding as BatchBinding;
  // The native database handle, set once when the RocksLevel is constructed.
  const handle = (db as Record<symbol, unknown>)[context];
  let batch: unknown;
  return (writes, sync) => {
    batch ??= b.batch_init();
    try {
      for (const w of writes) {
        if (w.value === null) b.batch_del(batch, w.key, NO_OPTIONS);
        else b.batch_put(batch, w.key, asBuffer(w.value), NO_OPTIONS);
      }
      // sync: the WAL is fsynced before the write returns (power loss). Without it the WAL is still
      // written to the OS before returning, so a killed process loses nothing.
      b.batch_write(handle, batch, { sync });
    } finally {
      // Empties the batch and keeps its buffer for the next commit (a failed write leaves nothing).
      b.batch_clear(batch);
    }
  };
}
