/**
 * The backend registry. Each engine's module (and its native package) is imported only when that
 * backend is chosen, so `buffdb kv get` on SQLite never loads DuckDB.
 */
import type { Backend } from './backend.js';

export const BACKEND_NAMES = ['sqlite', 'duckdb', 'rocksdb', 'lmdb'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
export const DEFAULT_BACKEND: BackendName = 'sqlite';

/** Backends that declare raw SQL; named in the UNIMPLEMENTED message of the others. */
export const SQL_BACKENDS: readonly BackendName[] = ['sqlite', 'duckdb'];

const loaders: Record<BackendName, () => Promise<Backend>> = {
  sqlite: async () => (await import('./sqlite/sqlite-backend.js')).sqliteBackend,
  duckdb: async () => (await import('./duckdb/duckdb-backend.js')).duckdbBackend,
  rocksdb: async () => (await import('./rocksdb/rocksdb-backend.js')).rocksdbBackend,
  lmdb: async () => (await import('./lmdb/lmdb-backend.js')).lmdbBackend,
};

export function isBackendName(name: string): name is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(name);
}

export async function loadBackend(name: string): Promise<Backend> {
  if (!isBackendName(name)) {
    throw new Error(`unknown backend ${JSON.stringify(name)}; choose one of: ${BACKEND_NAMES.join(', ')}`);
  }
  try {
    return await loaders[name]();
  } catch (err) {
    // A native package that failed to install (no prebuilt binary for this platform) should say so.
    const code = (err as { code?: string }).code;
    if (
      code === 'ERR_MODULE_NOT_FOUND' ||
      code === 'MODULE_NOT_FOUND' ||
      /\.node\b|No native build|prebuild/i.test((err as Error).message)
    ) {
      throw new Error(
        `backend ${name} is not installed or its native module cannot load on this platform: ${(err as Error).message.split('\n')[0]}`,
      );
    }
    throw err;
  }
}
