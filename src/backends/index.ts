/**
 * The backend registry: each engine's capabilities, declared once, and a loader. An engine's
 * module (and its native package) is imported only when that backend is chosen, so `buffdb kv get`
 * on SQLite never loads DuckDB; the capabilities are known without loading anything.
 */
import type { Backend, BackendCapabilities } from './backend.js';

/** What an engine's module exports: the backend without the name and capabilities given here. */
export type BackendImpl = Omit<Backend, 'name' | 'capabilities'>;

interface Registration {
  capabilities: BackendCapabilities;
  load: () => Promise<BackendImpl>;
}

const REGISTRY = {
  sqlite: {
    capabilities: {
      sqlDialect: 'sqlite',
      sqlKvWrites: true,
      multiProcess: true,
      inMemory: true,
      snapshot: 'online',
      maxBlobBytes: null,
    },
    load: async () => (await import('./sqlite/sqlite-backend.js')).sqliteBackend,
  },
  duckdb: {
    capabilities: {
      sqlDialect: 'duckdb',
      sqlKvWrites: false,
      multiProcess: false,
      inMemory: true,
      snapshot: 'held',
      // DuckDB 1.5 keeps native memory of about 4x the blob bytes written, and its memory_limit
      // fails commits instead of bounding it (docs/backends.md, "DuckDB memory limit").
      maxBlobBytes: 64 * 1024 * 1024,
    },
    load: async () => (await import('./duckdb/duckdb-backend.js')).duckdbBackend,
  },
  rocksdb: {
    capabilities: {
      sqlDialect: null,
      sqlKvWrites: false,
      multiProcess: false,
      inMemory: false,
      snapshot: 'online',
      maxBlobBytes: null,
    },
    load: async () => (await import('./rocksdb/rocksdb-backend.js')).rocksdbBackend,
  },
  lmdb: {
    capabilities: {
      sqlDialect: null,
      sqlKvWrites: false,
      multiProcess: true,
      inMemory: false,
      snapshot: 'held',
      maxBlobBytes: null,
    },
    load: async () => (await import('./lmdb/lmdb-backend.js')).lmdbBackend,
  },
  postgres: {
    capabilities: {
      sqlDialect: 'postgres',
      sqlKvWrites: true,
      multiProcess: true,
      inMemory: false,
      storeLocation: 'url',
      maxBlobBytes: null,
    },
    load: async () => (await import('./postgres/postgres-backend.js')).postgresBackend,
  },
} as const satisfies Record<string, Registration>;

export type BackendName = keyof typeof REGISTRY;
export const BACKEND_NAMES = Object.keys(REGISTRY) as BackendName[];
export const DEFAULT_BACKEND: BackendName = 'sqlite';

export function isBackendName(name: string): name is BackendName {
  return Object.hasOwn(REGISTRY, name);
}

export function capabilitiesOf(name: BackendName): BackendCapabilities {
  return REGISTRY[name].capabilities;
}

/** Backends with raw SQL; named in the UNIMPLEMENTED message of the others. */
export const SQL_BACKENDS: readonly BackendName[] = BACKEND_NAMES.filter((n) => REGISTRY[n].capabilities.sqlDialect);

export async function loadBackend(name: string): Promise<Backend> {
  if (!isBackendName(name)) {
    throw new Error(`unknown backend ${JSON.stringify(name)}; choose one of: ${BACKEND_NAMES.join(', ')}`);
  }
  const registration: Registration = REGISTRY[name];
  let impl: BackendImpl;
  try {
    impl = await registration.load();
  } catch (err) {
    // A native package that failed to install (no prebuilt binary for this platform) should say so.
    const code = (err as { code?: string }).code;
    const message = (err as Error).message;
    if (
      code === 'ERR_MODULE_NOT_FOUND' ||
      code === 'MODULE_NOT_FOUND' ||
      /\.node\b|No native build|prebuild/i.test(message)
    ) {
      throw new Error(
        `backend ${name} is not installed or its native module cannot load on this platform: ${message.split('\n')[0]}`,
      );
    }
    throw err;
  }
  return {
    name,
    capabilities: registration.capabilities,
    openKv: impl.openKv.bind(impl),
    openBlob: impl.openBlob.bind(impl),
    checkPath: impl.checkPath?.bind(impl),
  };
}
