/**
 * Child process for the kill -9 test: writes forever, printing one line per write only after the
 * write is acknowledged (committed). The parent SIGKILLs it and checks every acknowledged write.
 * Usage: kill-writer.ts BACKEND KV_STORE BLOB_STORE
 */
import { BuffDb } from '../../src/store/buffdb.js';

const [backend, kvStore, blobStore] = process.argv.slice(2);
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
