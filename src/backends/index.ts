/**
 * The backend registry. Each engine's module (and its native package) is imported only when that
 * backend is chosen, so `buffdb kv get` on SQLite never loads DuckDB.
 */
import type { Backend } from './backend.js';

export const BACKEND_NAMES = ['sqlite'] as const;
export type BackendName = (typeof BACKEND_NAMES)[number];
export const DEFAULT_BACKEND: BackendName = 'sqlite';

/** Backends that declare raw SQL; named in the UNIMPLEMENTED message of the others. */
export const SQL_BACKENDS: readonly BackendName[] = ['sqlite'];

const loaders: Record<BackendName, () => Promise<Backend>> = {
  sqlite: async () => (await import('./sqlite/sqlite-backend.js')).sqliteBackend,
};

export function isBackendName(name: string): name is BackendName {
  return (BACKEND_NAMES as readonly string[]).includes(name);
}

export async function loadBackend(name: string): Promise<Backend> {
  if (!isBackendName(name)) {
    throw new Error(`unknown backend ${JSON.stringify(name)}; choose one of: ${BACKEND_NAMES.join(', ')}`);
  }
  return loaders[name]();
}
