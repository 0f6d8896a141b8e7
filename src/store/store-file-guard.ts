/**
 * Fault handling for every backend: on POSIX a store file deleted (or replaced) under a running
 * server stays writable through the engine's open descriptor, so writes would be acknowledged into
 * a file nobody can open again — silent data loss at the next start. The guard checks, inside each
 * batch just before it commits (one stat), that the path still names the file that was opened; if
 * not, the batch fails (the engine rolls it back) with FAILED_PRECONDITION.
 */
import { statSync } from 'node:fs';
import type { StoreEngine } from '../backends/backend.js';
import { StoreError, status } from '../errors.js';

export function guardStoreFile<Ops>(engine: StoreEngine<Ops>, path: string): StoreEngine<Ops> {
  if (path === '' || path === ':memory:') return engine;
  const opened = statSync(path, { throwIfNoEntry: false });
  if (!opened) return engine;
  const assertUnmoved = (): void => {
    const now = statSync(path, { throwIfNoEntry: false });
    if (!now || now.ino !== opened.ino || now.dev !== opened.dev) {
      throw new StoreError(
        status.FAILED_PRECONDITION,
        `the store file ${path} was deleted or replaced while the server was running; ` +
          'nothing more is read from or written to it — restore the file or restart the server',
      );
    }
  };
  const batch = engine.batch.bind(engine);
  engine.batch = <T>(work: (ops: Ops) => Promise<T>, keys?: readonly string[]): Promise<T> =>
    batch(async (ops) => {
      const result = await work(ops);
      assertUnmoved();
      return result;
    }, keys);
  return engine;
}
