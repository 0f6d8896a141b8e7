/**
 * `buffdb migrate --from SPEC --to SPEC`: copies a KV and a BLOB store to another backend (see
 * src/store/copy-store.ts). SPEC is `BACKEND:KV_STORE,BLOB_STORE` (`sqlite:kv.db,blob.db`;
 * `sqlite:` alone: the default file names), or a postgres:// URL, which names both stores (each in
 * a schema of its own in that database).
 */

import { isBackendName, loadBackend } from '../backends/index.js';
import { DEFAULT_BLOB_STORE, DEFAULT_KV_STORE } from '../defaults.js';
import { copyStores, type StoreSpec } from '../store/copy-store.js';
import { displayLocation } from '../store/open-store.js';
import { CliError, EXIT } from './exit-codes.js';

export function parseSpec(spec: string, option: string): { backend: string; kvStore: string; blobStore: string } {
  if (/^postgres(ql)?:\/\//i.test(spec)) return { backend: 'postgres', kvStore: spec, blobStore: spec };
  const colon = spec.indexOf(':');
  const backend = colon === -1 ? spec : spec.slice(0, colon);
  if (!isBackendName(backend)) {
    throw new CliError(
      EXIT.USAGE,
      `${option} ${JSON.stringify(spec)}: expected BACKEND:KV_STORE,BLOB_STORE (e.g. sqlite:kv.db,blob.db) or a postgres:// URL`,
    );
  }
  const rest = colon === -1 ? '' : spec.slice(colon + 1);
  if (rest === '') return { backend, kvStore: DEFAULT_KV_STORE, blobStore: DEFAULT_BLOB_STORE };
  // Two URLs (postgres:URL,URL) or two paths.
  const cut = rest.search(/,(?=postgres(ql)?:\/\/)/i);
  const at = cut !== -1 ? cut : rest.lastIndexOf(',');
  if (at === -1) {
    throw new CliError(EXIT.USAGE, `${option} ${JSON.stringify(spec)} names one store; give KV_STORE,BLOB_STORE`);
  }
  return { backend, kvStore: rest.slice(0, at), blobStore: rest.slice(at + 1) };
}

export async function migrate(from: string, to: string, log: (line: string) => void): Promise<void> {
  const src = parseSpec(from, '--from');
  const dst = parseSpec(to, '--to');
  const spec = async (s: ReturnType<typeof parseSpec>): Promise<StoreSpec> => ({
    backend: await loadBackend(s.backend),
    kvStore: s.kvStore,
    blobStore: s.blobStore,
  });
  const counts = await copyStores(await spec(src), await spec(dst));
  log(
    `copied ${counts.keys} keys, ${counts.mapEntries} history/lease/meta entries and ${counts.blobs} blobs ` +
      `from ${src.backend} (${displayLocation(src.kvStore)}) to ${dst.backend} (${displayLocation(dst.kvStore)})`,
  );
}
