/** Upload / UploadStatus / Download (spec: blob-streams.md) over a real loopback server, once per backend. */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { type ServiceError, status } from '@grpc/grpc-js';
import { downloadBlob, uploadBlob } from '../src/client/blob-transfer.js';
import { connect } from '../src/client/network.js';
import { pattern } from '../src/conformance/large-blob-suite.js';
import type { BlobClient, UploadRequest } from '../src/generated/blob.js';
import { bidi, spawnServer, startTestServer, TEST_BACKENDS, type TestServer, tempDir } from './helpers/server.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();

/** Sends raw Upload messages; answers the response or the status. */
function rawUpload(blob: BlobClient, messages: UploadRequest[]): Promise<{ err?: ServiceError; id?: bigint }> {
  return new Promise((resolve) => {
    const call = blob.upload((err, res) => resolve(err ? { err } : { id: res!.id }));
    call.on('error', () => {});
    for (const m of messages) call.write(m);
    call.end();
  });
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const p of stream) parts.push(p as Buffer);
  return Buffer.concat(parts);
}

function downloadMessages(blob: BlobClient, req: Parameters<BlobClient['download']>[0]) {
  return new Promise<{ msgs: { header?: unknown; chunk?: Buffer }[]; err?: ServiceError }>((resolve) => {
    const msgs: { header?: unknown; chunk?: Buffer }[] = [];
    const call = blob.download(req);
    call.on('data', (m) => msgs.push(m));
    call.on('error', (err: ServiceError) => resolve({ msgs, err }));
    call.on('end', () => resolve({ msgs }));
  });
}

const H = (extra: Partial<NonNullable<UploadRequest['header']>> = {}) => ({
  header: { offset: 0n, shouldUpdateMetadata: false, ...extra },
});

for (const backend of TEST_BACKENDS) {
  describe(`Blob streams [${backend}]`, () => {
    let srv: TestServer;
    before(async () => {
      srv = await startTestServer({ backend });
    });
    after(async () => {
      await srv.dispose();
    });
    const blob = () => srv.clients.blob;

    it('upload then download: size, SHA-256 and bytes agree on both ends; Get reads it too', async () => {
      const data = pattern(3 * MiB + 777, 5);
      const up = await uploadBlob(blob(), data, {
        metadata: 'm',
        sha256: sha(data),
        size: BigInt(data.length),
        chunkSize: 256 * 1024,
      });
      assert.equal(up.size, BigInt(data.length));
      assert.ok(up.sha256.equals(sha(data)));
      const down = downloadBlob(blob(), up.id);
      const bytes = await readAll(down);
      const header = await down.header;
      assert.ok(bytes.equals(data));
      assert.ok(header.sha256.equals(sha(data)));
      assert.equal(header.metadata, 'm');
      const got = await bidi(blob().get(), [{ id: up.id }]);
      assert.ok(Buffer.from(got.out[0]!.bytes).equals(data));
    });

    it('chunks of any size are stored byte for byte (spanning, inside and across the 1 MiB storage chunks)', async () => {
      const sizes = [3, MiB + MiB / 2, 0, MiB - 3, 5 * MiB + 7, 1, MiB];
      const data = pattern(
        sizes.reduce((a, b) => a + b, 0),
        11,
      );
      const msgs: UploadRequest[] = [H({ size: BigInt(data.length), sha256: sha(data) })];
      for (let at = 0, i = 0; i < sizes.length; at += sizes[i++]!)
        msgs.push({ chunk: data.subarray(at, at + sizes[i]!) });
      const up = await rawUpload(blob(), msgs);
      assert.equal(up.err, undefined, up.err?.details);
      const down = await downloadMessages(blob(), { id: up.id!, offset: 0n, chunkSize: 0 });
      assert.equal(down.err, undefined, down.err?.details);
      assert.ok(Buffer.concat(down.msgs.slice(1).map((m) => m.chunk!)).equals(data));
    });

    it('message rules: one header first, then chunks (INVALID_ARGUMENT otherwise)', async () => {
      const cases: [string, UploadRequest[]][] = [
        ['no header', []],
        ['a chunk first', [{ chunk: Buffer.from('x') }, H()]],
        ['two headers', [H(), { chunk: Buffer.from('x') }, H()]],
        ['upload_id empty', [H({ uploadId: '' })]],
        ['upload_id too long', [H({ uploadId: 'u'.repeat(129) })]],
        ['sha256 not 32 bytes', [H({ sha256: Buffer.alloc(16) })]],
        ['size not reached', [H({ size: 10n }), { chunk: Buffer.from('short') }]],
        ['size exceeded', [H({ size: 2n }), { chunk: Buffer.from('too long') }]],
      ];
      for (const [name, msgs] of cases) {
        const res = await rawUpload(blob(), msgs);
        assert.equal(res.err?.code, status.INVALID_ARGUMENT, `${name}: ${res.err?.details}`);
      }
      const wrongHash = await rawUpload(blob(), [H({ sha256: Buffer.alloc(32) }), { chunk: Buffer.from('data') }]);
      assert.equal(wrongHash.err?.code, status.DATA_LOSS, wrongHash.err?.details);
      const missing = await rawUpload(blob(), [H({ id: 999_999_999n }), { chunk: Buffer.from('data') }]);
      assert.equal(missing.err?.code, status.NOT_FOUND);
    });

    it('download rules: header first, chunk_size honoured and capped at 4 MiB, ranges clamped, errors', async () => {
      const data = pattern(9 * MiB, 8);
      const { id } = await uploadBlob(blob(), data);
      const small = await downloadMessages(blob(), { id, offset: 10n, length: 1000n, chunkSize: 300 });
      assert.equal(small.err, undefined);
      assert.deepEqual(small.msgs[0]!.header, {
        size: BigInt(data.length),
        metadata: undefined,
        sha256: sha(data),
        offset: 10n,
        length: 1000n,
      });
      assert.deepEqual(
        small.msgs.slice(1).map((m) => m.chunk!.length),
        [300, 300, 300, 100],
      );
      assert.ok(Buffer.concat(small.msgs.slice(1).map((m) => m.chunk!)).equals(data.subarray(10, 1010)));
      const big = await downloadMessages(blob(), { id, offset: 0n, chunkSize: 64 * MiB });
      assert.ok(big.msgs.slice(1).every((m) => m.chunk!.length <= 4 * MiB));
      assert.equal(
        big.msgs.slice(1).reduce((n, m) => n + m.chunk!.length, 0),
        data.length,
      );
      const clamped = await downloadMessages(blob(), {
        id,
        offset: BigInt(data.length - 5),
        length: 100n,
        chunkSize: 0,
      });
      assert.equal((clamped.msgs[0]!.header as { length: bigint }).length, 5n);
      const atEnd = await downloadMessages(blob(), { id, offset: BigInt(data.length), chunkSize: 0 });
      assert.equal(atEnd.msgs.length, 1, 'offset = size serves an empty range');
      const past = await downloadMessages(blob(), { id, offset: BigInt(data.length + 1), chunkSize: 0 });
      assert.equal(past.err?.code, status.OUT_OF_RANGE);
      const none = await downloadMessages(blob(), { id: 987_654_321n, offset: 0n, chunkSize: 0 });
      assert.equal(none.err?.code, status.NOT_FOUND);
      assert.match(none.err!.details, /987654321/);
    });

    it('a resumable upload cancelled by the client keeps its durable bytes and continues', async () => {
      const data = pattern(10 * MiB + 5, 9);
      const uploadId = `cancel-${backend}`;
      const hdr = { uploadId, size: BigInt(data.length), sha256: sha(data) };
      await new Promise<void>((resolve) => {
        const call = blob().upload(() => resolve());
        call.on('error', () => {});
        call.write(H(hdr));
        for (let at = 0; at < 6 * MiB; at += MiB) call.write({ chunk: data.subarray(at, at + MiB) });
        // Cancel once the server reports 4 MiB durable: then at least that much must survive.
        const poll = setInterval(() => {
          blob().uploadStatus({ uploadId }, (err, s) => {
            if (!err && s!.received >= BigInt(4 * MiB)) {
              clearInterval(poll);
              call.cancel();
            }
          });
        }, 20);
      });
      const st = await new Promise<{ received: bigint; exists: boolean }>((res, rej) =>
        blob().uploadStatus({ uploadId }, (e, s) => (e ? rej(e) : res(s!))),
      );
      assert.equal(st.exists, true);
      assert.ok(st.received >= BigInt(4 * MiB), `received ${st.received}`);
      // The cancelled call's last chunks may still land after the status was read: the refusal of a
      // wrong offset names where the upload continues now, at least what was durable before.
      const wrong = await rawUpload(blob(), [H({ ...hdr, offset: BigInt(8 * MiB) })]);
      assert.equal(wrong.err?.code, status.OUT_OF_RANGE);
      const at = BigInt(/continues at offset (\d+)/.exec(wrong.err!.details)?.[1] ?? -1);
      assert.ok(at >= st.received && at <= BigInt(6 * MiB), `continues at ${at}, status said ${st.received}`);
      const done = await uploadBlob(blob(), data.subarray(Number(at)), { ...hdr, offset: at });
      assert.ok(done.sha256.equals(sha(data)));
      assert.ok((await readAll(downloadBlob(blob(), done.id))).equals(data));
    });
  });
}

describe('Blob streams across kill -9', () => {
  it('a resumable upload survives kill -9 of the server: status reports durable bytes, the upload completes', async () => {
    const dir = tempDir('buffdb-upload-kill-');
    const data = pattern(12 * MiB + 1, 13);
    const uploadId = 'killed';
    const hdr = { uploadId, size: BigInt(data.length), sha256: sha(data) };
    try {
      let server = await spawnServer(['127.0.0.1:0'], dir);
      let clients = connect(server.addr);
      let durable = 0n;
      await new Promise<void>((resolve) => {
        const call = clients.blob.upload(() => resolve());
        call.on('error', () => resolve());
        call.write(H(hdr));
        for (let at = 0; at < 9 * MiB; at += MiB) call.write({ chunk: data.subarray(at, at + MiB) });
        const poll = setInterval(() => {
          clients.blob.uploadStatus({ uploadId }, (err, s) => {
            if (!err && s!.received >= BigInt(8 * MiB)) {
              clearInterval(poll);
              durable = s!.received;
              server.child.kill('SIGKILL');
            }
          });
        }, 20);
      });
      await server.exited;
      clients.close();
      server = await spawnServer(['127.0.0.1:0'], dir);
      clients = connect(server.addr);
      try {
        const st = await new Promise<{ received: bigint; exists: boolean }>((res, rej) =>
          clients.blob.uploadStatus({ uploadId }, (e, s) => (e ? rej(e) : res(s!))),
        );
        assert.ok(st.received >= durable, `${st.received} bytes after the restart, ${durable} reported before`);
        const done = await uploadBlob(clients.blob, data.subarray(Number(st.received)), {
          ...hdr,
          offset: st.received,
        });
        assert.ok(done.sha256.equals(sha(data)));
        assert.ok((await readAll(downloadBlob(clients.blob, done.id))).equals(data));
      } finally {
        clients.close();
        server.child.kill('SIGTERM');
        await server.exited;
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
