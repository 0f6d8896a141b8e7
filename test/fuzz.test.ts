/**
 * Fuzzing, short variant: the seed corpus (test/fuzz-corpus/), a few hundred fresh random cases,
 * raw HTTP/2 framing errors, oversize messages and abandoned streams against a `buffdb run` child.
 * The long run is `npm run fuzz`.
 */

import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { Client, credentials, status } from '@grpc/grpc-js';
import { healthy, loadCorpus, rssOf, runFuzz, type ServerProc, sendRaw, startFuzzServer } from '../scripts/fuzz.js';
import { loadBackend } from '../src/backends/index.js';
import { storeLocator } from './helpers/postgres.js';
import { ROOT, TEST_BACKENDS, tempDir } from './helpers/server.js';

for (const backend of TEST_BACKENDS)
  describe(`fuzzing the gRPC surface [${backend}]`, async () => {
    const { capabilities } = await loadBackend(backend);
    let dir: string;
    let server: ServerProc;
    let stores: Awaited<ReturnType<typeof storeLocator>>;
    before(async () => {
      dir = tempDir('buffdb-fuzz-');
      stores = await storeLocator(backend);
      const { kvStore, blobStore } = stores.locate('fuzz');
      server = await startFuzzServer(dir, ['--backend', backend, '--kv-store', kvStore, '--blob-store', blobStore]);
    });
    after(async () => {
      if (server.child.exitCode === null) server.child.kill('SIGKILL');
      await server.exited;
      await stores.dispose();
      rmSync(dir, { recursive: true, force: true });
    });

    it('corpus + 400 random cases, raw HTTP/2, oversize, 1000 abandoned streams: every answer clean, server alive', async () => {
      const corpus = loadCorpus(join(ROOT, 'test', 'fuzz-corpus'));
      assert.ok(corpus.length > 300, `corpus has only ${corpus.length} cases`);
      const stats = await runFuzz(
        server.addr,
        corpus,
        400,
        Date.now() % 100_000,
        1000,
        () => {},
        capabilities.sqlDialect !== null,
      );
      assert.deepEqual(stats.problems, []);
      assert.equal(server.child.exitCode, null, 'the server exited');
      assert.ok(rssOf(server.child.pid!) < 400, 'server RSS above 400 MiB');
    });

    it('bad requests get messages a person can act on', async () => {
      const client = new Client(server.addr, credentials.createInsecure());
      try {
        const utf8 = await sendRaw(client, '/buffdb.kv.Kv/Set', [Buffer.from('0a02fffe', 'hex')]);
        assert.equal(utf8.code, status.INVALID_ARGUMENT);
        assert.match(utf8.details, /malformed Set request message: a string field is not valid UTF-8/);
        if (capabilities.sqlDialect) {
          const target = await sendRaw(client, '/buffdb.query.Query/Query', [
            Buffer.from('0a0853454c45435420311007', 'hex'),
          ]);
          assert.equal(target.code, status.INVALID_ARGUMENT);
          assert.match(target.details, /unknown target store 7; use KV \(0\) or BLOB \(1\)/);
        }
        const big = await sendRaw(client, '/buffdb.blob.Blob/Store', [Buffer.alloc(2 * 1024 * 1024)]);
        assert.equal(big.code, status.RESOURCE_EXHAUSTED);
        assert.match(big.details, /larger than max/);
      } finally {
        client.close();
      }
    });

    it('bad etcd requests get etcd’s own texts, and unserved etcd methods say so', async () => {
      const client = new Client(server.addr, credentials.createInsecure());
      try {
        const empty = await sendRaw(client, '/etcdserverpb.KV/Range', [Buffer.alloc(0)]);
        assert.deepEqual([empty.code, empty.details], [status.INVALID_ARGUMENT, 'etcdserver: key is not provided']);
        const watch = await sendRaw(client, '/etcdserverpb.Watch/Watch', [Buffer.from('0a050a80808008', 'hex')]);
        assert.equal(watch.code, status.INVALID_ARGUMENT);
        assert.match(watch.details, /^malformed Watch request message: /);
        const defrag = await sendRaw(client, '/etcdserverpb.Maintenance/Defragment', [Buffer.alloc(0)]);
        assert.equal(defrag.code, status.UNIMPLEMENTED);
        assert.match(defrag.details, /etcdserverpb\.Maintenance\/Defragment is not served by buffdb/);
        // Without --auth-file there are no etcd users: etcd's "authentication is not enabled".
        const auth = await sendRaw(client, '/etcdserverpb.Auth/AuthEnable', [Buffer.alloc(0)]);
        assert.equal(auth.code, status.FAILED_PRECONDITION);
        assert.match(auth.details, /^etcdserver: authentication is not enabled/);
      } finally {
        client.close();
      }
    });

    it('stops cleanly afterwards: exit 0, no stack trace', async () => {
      await healthy(server.addr);
      server.child.kill('SIGTERM');
      assert.equal(await server.exited, 0);
      assert.doesNotMatch(server.stderr(), /\n\s+at /);
    });
  });
