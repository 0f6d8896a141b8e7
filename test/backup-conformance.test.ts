/** The conformance suite (test/conformance/suite.ts) on stores restored from an online backup, per backend. */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { type BackendName, capabilitiesOf } from '../src/backends/index.js';
import { conformance } from '../src/conformance/suite.js';
import { cliSync as cli, cliAsync } from './helpers/ops.js';
import { startTestServer, TEST_BACKENDS, tempDir } from './helpers/server.js';

// Backends without online backup prove that they refuse it (backup.test.ts).
for (const backend of TEST_BACKENDS.filter((b) => capabilitiesOf(b as BackendName).snapshot)) {
  conformance(backend, {
    label: 'on stores restored from a backup',
    prepare: async (kvStore, blobStore) => {
      const source = tempDir(`buffdb-backup-src-${backend}-`);
      const server = await startTestServer({ backend, dir: source });
      try {
        await server.db.kv.setValue('restored', 'yes');
        await server.db.blob.storeBlob(Buffer.from('restored blob'), 'restored');
        const b = await cliAsync(source, ['backup', '--addr', server.addr, 'b.buffdb']);
        assert.equal(b.status, 0, b.stderr);
      } finally {
        await server.stop();
      }
      const r = cli(source, ['restore', 'b.buffdb', '--kv-store', kvStore, '--blob-store', blobStore]);
      assert.equal(r.status, 0, r.stderr);
      rmSync(source, { recursive: true, force: true });
    },
  });
}
