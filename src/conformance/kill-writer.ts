/**
 * Child process for the conformance suite's kill -9 test: writes forever, printing one line per
 * write only after the write is acknowledged (committed). The parent SIGKILLs it and checks every
 * acknowledged write. Usage: kill-writer BACKEND KV_STORE BLOB_STORE, where BACKEND is a
 * registered backend name or a module (path or URL) whose default export is a Backend.
 */
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { Backend } from '../backends/backend.js';
import { isBackendName } from '../backends/index.js';
import { BuffDb } from '../store/buffdb.js';

const [which, kvStore, blobStore] = process.argv.slice(2) as [string, string, string];
const backend: string | Backend = isBackendName(which)
  ? which
  : ((await import(isAbsolute(which) ? pathToFileURL(which).href : which)) as { default: Backend }).default;
const db = await BuffDb.open({ backend, kvStore, blobStore });
let blobs = 0;
for (let i = 0; ; i++) {
  await db.kv.setValue(`kill${i}`, `value ${i}`);
  // Pipes are written synchronously on POSIX: once this returns, the parent can read the line.
  process.stdout.write(`kv ${i}\n`);
  if (i % 4 === 0) {
    const id = await db.blob.storeBlob(Buffer.from(`blob ${blobs++}`));
    process.stdout.write(`blob ${id}\n`);
  }
}
