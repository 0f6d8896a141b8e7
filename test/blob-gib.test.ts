/**
 * A 1 GiB blob through a real `buffdb run` process, once per backend (spec blob-streams.md: "Blobs
 * of at least 1 GiB work on every backend, or the README states a backend's lower limit and its
 * error"): uploaded from data generated as it is sent (the test never holds more than a chunk),
 * downloaded back, SHA-256 compared on both ends; the server's anonymous resident memory (RssAnon
 * from /proc/PID/status, sampled every 25 ms) grows by less than 128 MiB over the whole transfer.
 * Anonymous, because a memory-mapped store (lmdb) counts the file pages it touches in its RSS: page
 * cache the kernel reclaims, not memory the server holds. VmHWM growth is reported beside it.
 *
 * Part of `npm run test:suites` (a few minutes per backend). Measured (2 cores, other tests
 * running): sqlite +84 MiB, lmdb +56 MiB, rocksdb +113-116 MiB (its memtables and block cache
 * bounded in src/backends/rocksdb), postgres +102 MiB (anonymous).
 *
 * A backend whose capabilities declare `maxBlobBytes` (duckdb: 64 MiB, because DuckDB 1.5 itself
 * keeps native memory of about 4x the blob bytes written — 1 GiB took +4 GiB and 331 s — and its
 * memory_limit fails commits rather than bounding it; docs/large-blobs.md, "Memory") is tested at
 * its limit instead: 1 GiB with a declared size and limit+1 MiB without one are RESOURCE_EXHAUSTED
 * naming the limit and store nothing, exactly the limit round-trips, and the server goes on serving.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { type BackendName, capabilitiesOf } from '../src/backends/index.js';
import { downloadBlob, uploadBlob } from '../src/client/blob-transfer.js';
import { type BuffDbClients, connect } from '../src/client/network.js';
import { bidi, type ServerProcess, serverStores, spawnServer, TEST_BACKENDS } from './helpers/server.js';

const MiB = 1024 * 1024;
const SIZE = 1024 * MiB;
const GROWTH_LIMIT = 128 * MiB;

/** A field of /proc/PID/status, in bytes. */
function statusBytes(pid: number, field: 'VmHWM' | 'RssAnon'): number {
  const re = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm');
  return Number(re.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
}

/** Samples RssAnon until stopped; answers the largest value seen. */
function sampleAnon(pid: number): () => number {
  let max = statusBytes(pid, 'RssAnon');
  const timer = setInterval(() => {
    max = Math.max(max, statusBytes(pid, 'RssAnon'));
  }, 25);
  return () => {
    clearInterval(timer);
    return Math.max(max, statusBytes(pid, 'RssAnon'));
  };
}

const mib = (n: number): string => `${(n / MiB).toFixed(0)} MiB`;

/** `size` deterministic bytes in fresh 1 MiB chunks (a fixed block, each copy stamped with its index), hashed as generated. */
function generated(hash: ReturnType<typeof createHash>, size = SIZE): AsyncGenerator<Buffer> {
  const block = Buffer.alloc(MiB);
  for (let i = 0, x = 0x2545f491; i < MiB; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    block.writeUInt32LE(x, i);
  }
  return (async function* () {
    for (let i = 0; i * MiB < size; i++) {
      const chunk = Buffer.from(block.subarray(0, Math.min(MiB, size - i * MiB)));
      chunk.writeUInt32LE(i, 0);
      hash.update(chunk);
      yield chunk;
    }
  })();
}

/** Rejects with the gRPC status of a refused call. */
async function refused(p: Promise<unknown>, code: number, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: ServiceError) => {
    assert.equal(err.code, code, err.message);
    assert.match(err.details, pattern);
    return true;
  });
}

/** Runs `body` against a fresh `buffdb run` process of `backend`. */
async function withServer(
  backend: string,
  maxMessageSize: number | undefined,
  body: (clients: BuffDbClients, server: ServerProcess) => Promise<void>,
): Promise<void> {
  const stores = await serverStores(backend, 'buffdb-gib-');
  const extra = maxMessageSize === undefined ? [] : ['--max-message-size', String(maxMessageSize)];
  const server = await spawnServer(stores.args('--log-level', 'warn', ...extra), stores.dir);
  const clients = connect(server.addr, { maxMessageSize });
  try {
    await body(clients, server);
  } finally {
    clients.close();
    server.child.kill('SIGTERM');
    await server.exited;
    await stores.dispose();
  }
}

/** A backend with a declared `maxBlobBytes`: refused beyond it (RESOURCE_EXHAUSTED), stored up to it. */
function limitTests(backend: string, limit: number): void {
  describe(`the largest blob through buffdb run [${backend}: maxBlobBytes ${mib(limit)}]`, () => {
    it('1 GiB and limit+1 MiB are RESOURCE_EXHAUSTED naming the limit, nothing stored; exactly the limit round-trips', async () => {
      // Store over the limit needs a message larger than it.
      await withServer(backend, limit + 4 * MiB, async (clients) => {
        const names = new RegExp(`the ${backend} backend stores blobs of at most ${mib(limit)}`);
        const marker = await bidi(clients.blob.store(), [{ bytes: Buffer.from('marker') }]);
        assert.equal(marker.err, undefined);
        const markerId = marker.out[0]!.id;

        await refused(
          uploadBlob(clients.blob, generated(createHash('sha256')), { size: BigInt(SIZE) }),
          status.RESOURCE_EXHAUSTED,
          new RegExp(`${names.source} \\(this one is ${SIZE} bytes\\)`),
        );

        const uploadId = 'over-the-limit';
        await refused(
          uploadBlob(clients.blob, generated(createHash('sha256'), limit + MiB), { uploadId }),
          status.RESOURCE_EXHAUSTED,
          names,
        );
        const state = await new Promise<{ exists: boolean; received: bigint }>((res, rej) =>
          clients.blob.uploadStatus({ uploadId }, (e, s) => (e ? rej(e) : res(s!))),
        );
        assert.deepEqual({ exists: state.exists, received: state.received }, { exists: false, received: 0n });
        const after = await bidi(clients.blob.get(), [{ id: markerId + 1n }]);
        assert.equal(after.err?.code, status.NOT_FOUND, 'no blob was stored after the marker');

        const stored = await bidi(clients.blob.store(), [{ bytes: Buffer.alloc(limit + 1, 7) }]);
        assert.equal(stored.err?.code, status.RESOURCE_EXHAUSTED, stored.err?.message);
        assert.match(stored.err!.details, names);
        const updated = await bidi(clients.blob.update(), [
          { id: markerId, bytes: Buffer.alloc(limit + 1, 8), shouldUpdateMetadata: false },
        ]);
        assert.equal(updated.err?.code, status.RESOURCE_EXHAUSTED, updated.err?.message);

        const sent = createHash('sha256');
        const up = await uploadBlob(clients.blob, generated(sent, limit), { size: BigInt(limit), metadata: 'limit' });
        const sentDigest = sent.digest();
        assert.equal(up.size, BigInt(limit));
        assert.ok(up.sha256.equals(sentDigest));
        const received = createHash('sha256');
        const down = downloadBlob(clients.blob, up.id);
        for await (const chunk of down as AsyncIterable<Buffer>) received.update(chunk);
        assert.ok((await down.header).sha256.equals(sentDigest));
        assert.ok(received.digest().equals(sentDigest), 'the downloaded bytes are the uploaded ones');

        // Still serving, and the marker is untouched by the refused Update.
        const got = await bidi(clients.blob.get(), [{ id: markerId }]);
        assert.equal(got.err, undefined);
        assert.equal(Buffer.from(got.out[0]!.bytes).toString(), 'marker');
      });
    });
  });
}

for (const backend of TEST_BACKENDS) {
  const limit = capabilitiesOf(backend as BackendName).maxBlobBytes;
  if (limit !== null) limitTests(backend, limit);
  else
    describe(`a 1 GiB blob through buffdb run [${backend}]`, () => {
      it('uploads and downloads with the same SHA-256 on both ends; server RSS grows < 128 MiB', async (t) => {
        await withServer(backend, undefined, async (clients, server) => {
          const pid = server.child.pid!;
          const startHwm = statusBytes(pid, 'VmHWM');
          const startAnon = statusBytes(pid, 'RssAnon');
          const stopSampling = sampleAnon(pid);
          const started = Date.now();
          const sent = createHash('sha256');
          const up = await uploadBlob(clients.blob, generated(sent), { size: BigInt(SIZE), metadata: 'gib' });
          const sentDigest = sent.digest();
          assert.equal(up.size, BigInt(SIZE));
          assert.ok(up.sha256.equals(sentDigest), 'the server hashed what the client sent');
          const uploadMs = Date.now() - started;

          const down = downloadBlob(clients.blob, up.id);
          const header = await down.header;
          assert.equal(header.size, BigInt(SIZE));
          assert.equal(header.metadata, 'gib');
          assert.ok(header.sha256.equals(sentDigest));
          const received = createHash('sha256');
          let bytes = 0;
          for await (const chunk of down as AsyncIterable<Buffer>) {
            received.update(chunk);
            bytes += chunk.length;
          }
          assert.equal(bytes, SIZE);
          assert.ok(received.digest().equals(sentDigest), 'the downloaded bytes are the uploaded ones');

          const growth = stopSampling() - startAnon;
          t.diagnostic(
            `upload ${uploadMs} ms, download ${Date.now() - started - uploadMs} ms; server anonymous RSS ` +
              `+${mib(growth)} (start ${mib(startAnon)}), VmHWM +${mib(statusBytes(pid, 'VmHWM') - startHwm)}`,
          );
          assert.ok(growth < GROWTH_LIMIT, `server anonymous RSS grew by ${mib(growth)} (limit ${mib(GROWTH_LIMIT)})`);
        });
      });
    });
}
