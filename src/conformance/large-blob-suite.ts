/**
 * Large blobs in the conformance suite: chunked uploads (plain, resumable, in a transaction),
 * ranged downloads as consistent snapshots, and their interplay with the original Blob API —
 * through the store layer, on whatever backend the suite runs.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { describe, it } from 'node:test';
import { StoreError, status } from '../errors.js';
import type { BlobStore } from '../store/blob/blob-store.js';
import type { UploadHeader, UploadResult } from '../store/blob/upload.js';
import type { BuffDb, BuffDbOptions } from '../store/buffdb.js';
import type { BlobRequests } from '../store/requests.js';

const MiB = 1024 * 1024;

/** Deterministic bytes (so a test can recompute what any range should hold). */
export function pattern(size: number, seed = 1): Buffer {
  const out = Buffer.allocUnsafe(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** An Upload header: a new, one-call blob unless `extra` says otherwise. */
export function header(extra: Partial<UploadHeader> = {}): UploadHeader {
  return {
    metadata: undefined,
    id: undefined,
    size: undefined,
    sha256: undefined,
    transactionId: undefined,
    uploadId: undefined,
    offset: 0,
    shouldUpdateMetadata: false,
    ...extra,
  };
}

/** Uploads `data` in chunks of `piece` bytes and completes it. */
async function upload(
  to: BlobRequests,
  data: Buffer,
  h: Partial<UploadHeader> = {},
  piece = 300_000,
): Promise<UploadResult> {
  const u = await to.beginUpload(header(h));
  for (let at = h.offset ?? 0; at < data.length; at += piece)
    await u.write(data.subarray(at, Math.min(at + piece, data.length)));
  return u.end();
}

async function download(blob: BlobRequests, id: number, offset = 0, length?: number): Promise<Buffer> {
  const r = await blob.openReader(id);
  try {
    const end = length === undefined ? r.size : Math.min(r.size, offset + length);
    const parts: Buffer[] = [];
    for (let at = offset; at < end; at += MiB) parts.push(await r.read(at, Math.min(MiB, end - at)));
    return Buffer.concat(parts);
  } finally {
    r.close();
  }
}

async function rejectsWith(p: Promise<unknown>, code: number, pattern: RegExp): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof StoreError, `expected a StoreError, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    assert.match(err.message, pattern);
    return true;
  });
}

/** How many chunk rows the store holds (to see unused chunks go). */
async function chunkRows(store: BlobStore): Promise<number> {
  const rows = await store.committer.run((ops) =>
    ops.maps.range('chunk', { start: Buffer.alloc(0), end: undefined, limit: Number.MAX_SAFE_INTEGER, reverse: false }),
  );
  return rows.length;
}

export function largeBlobConformance(
  dbOf: () => BuffDb,
  reopen: (name: string, extra?: Partial<BuffDbOptions>) => Promise<BuffDb>,
): void {
  describe('large blobs (Upload / Download)', () => {
    it('an upload in odd-sized chunks answers id, size and SHA-256; ranges download exactly; Get assembles it', async () => {
      const db = dbOf();
      const data = pattern(5 * MiB + 12_345, 7);
      const sha = createHash('sha256').update(data).digest();
      const res = await upload(db.blob, data, { metadata: 'big', size: data.length, sha256: sha });
      assert.equal(res.size, data.length);
      assert.ok(res.sha256.equals(sha));
      const before = await db.blob.storeBlob(Buffer.from('plain'));
      assert.ok(before > res.id, 'ids stay increasing across Store and Upload');
      assert.ok((await download(db.blob, res.id)).equals(data));
      for (const [offset, length] of [
        [0, 1],
        [MiB - 1, 2],
        [3 * MiB + 5, MiB + 7],
        [data.length - 10, 100],
        [data.length, undefined],
      ] as const) {
        const got = await download(db.blob, res.id, offset, length);
        assert.ok(
          got.equals(data.subarray(offset, length === undefined ? undefined : offset + length)),
          `range ${offset}+${length}`,
        );
      }
      const reader = await db.blob.openReader(res.id);
      assert.equal(reader.metadata, 'big');
      assert.ok(reader.sha256.equals(sha));
      reader.close();
      const whole = await db.blob.getBlob(res.id);
      assert.ok(Buffer.from(whole.data).equals(data));
      assert.equal(whole.metadata, 'big');
    });

    it('an empty upload and an upload without size or hash', async () => {
      const db = dbOf();
      const empty = await upload(db.blob, Buffer.alloc(0));
      assert.equal(empty.size, 0);
      assert.equal((await db.blob.getBlob(empty.id)).data.byteLength, 0);
      const small = await upload(db.blob, Buffer.from('tiny'));
      assert.equal(Buffer.from((await db.blob.getBlob(small.id)).data).toString(), 'tiny');
    });

    it('a wrong size or hash stores nothing (INVALID_ARGUMENT / DATA_LOSS); bad headers are refused', async () => {
      const db = dbOf();
      const data = pattern(2 * MiB, 3);
      const next = async () => (await db.blob.storeBlob(Buffer.from('marker'))) + 1;
      const expectedNext = await next();
      await rejectsWith(upload(db.blob, data, { size: data.length + 1 }), status.INVALID_ARGUMENT, /size/);
      await rejectsWith(upload(db.blob, data, { size: data.length - 1 }), status.INVALID_ARGUMENT, /size/);
      await rejectsWith(upload(db.blob, data, { sha256: Buffer.alloc(32) }), status.DATA_LOSS, /sha256/);
      await rejectsWith(upload(db.blob, data, { sha256: Buffer.alloc(31) }), status.INVALID_ARGUMENT, /32 bytes/);
      await rejectsWith(upload(db.blob, data, { uploadId: '' }), status.INVALID_ARGUMENT, /upload_id/);
      await rejectsWith(upload(db.blob, data, { uploadId: 'x'.repeat(129) }), status.INVALID_ARGUMENT, /upload_id/);
      await rejectsWith(upload(db.blob, data, { id: 10n ** 15n }), status.NOT_FOUND, /1000000000000000/);
      // Nothing stored: the blob after the failures is the next id after the marker's... or later,
      // never a half-stored blob that answers Get.
      const after = await db.blob.storeBlob(Buffer.from('after'));
      for (let id = expectedNext; id < after; id++)
        await rejectsWith(db.blob.getBlob(id), status.NOT_FOUND, /not found/);
    });

    it('an upload with id replaces the data (metadata by should_update_metadata); the old chunks are collected', async () => {
      const db = dbOf();
      const first = await upload(db.blob, pattern(3 * MiB, 11), { metadata: 'one' });
      const rowsBefore = await chunkRows(db.blob);
      const second = await upload(db.blob, pattern(2 * MiB, 12), { id: BigInt(first.id) });
      assert.equal(second.id, first.id);
      let r = await db.blob.openReader(first.id);
      assert.equal(r.metadata, 'one');
      assert.equal(r.size, 2 * MiB);
      r.close();
      await upload(db.blob, pattern(MiB, 13), { id: BigInt(first.id), shouldUpdateMetadata: true });
      r = await db.blob.openReader(first.id);
      assert.equal(r.metadata, null, 'should_update_metadata with no metadata sets null');
      r.close();
      await db.blob.large.collect();
      assert.ok((await chunkRows(db.blob)) < rowsBefore, 'replaced data does not stay');
      await db.blob.updateBlob(first.id, { bytes: Buffer.from('inline now'), shouldUpdateMetadata: false });
      assert.equal(Buffer.from((await db.blob.getBlob(first.id)).data).toString(), 'inline now');
      await db.blob.deleteBlob(first.id);
      await rejectsWith(db.blob.openReader(first.id), status.NOT_FOUND, new RegExp(String(first.id)));
    });

    it('a download is a snapshot: an update or delete meanwhile does not change what it serves', async () => {
      const db = dbOf();
      const data = pattern(3 * MiB, 21);
      const { id } = await upload(db.blob, data);
      const reader = await db.blob.openReader(id);
      const head = await reader.read(0, MiB);
      await upload(db.blob, pattern(3 * MiB, 22), { id: BigInt(id) });
      await db.blob.deleteBlob(id);
      await db.blob.large.collect();
      const rest = await reader.read(MiB, 2 * MiB);
      reader.close();
      assert.ok(Buffer.concat([head, rest]).equals(data));
    });

    it('resumable: interrupted calls keep durable bytes; status, offset and header rules; completion forgets it', async () => {
      const db = dbOf();
      const data = pattern(9 * MiB + 3, 31);
      const sha = createHash('sha256').update(data).digest();
      const h = { uploadId: 'resume-1', size: data.length, sha256: sha, metadata: 'r' };
      const u = await db.blob.beginUpload(header(h));
      await rejectsWith(db.blob.beginUpload(header(h)), status.ABORTED, /already running/);
      await u.write(data.subarray(0, 5 * MiB + 17));
      await u.interrupted();
      const status1 = await db.blob.uploadStatus('resume-1');
      assert.equal(status1.exists, true);
      assert.equal(status1.received, 5 * MiB + 17, 'everything that arrived is kept when a call ends');
      await rejectsWith(db.blob.beginUpload(header({ ...h, offset: 3 })), status.OUT_OF_RANGE, /5242897/);
      await rejectsWith(
        db.blob.beginUpload(header({ ...h, metadata: 'other', offset: status1.received })),
        status.FAILED_PRECONDITION,
        /header/,
      );
      const half = await db.blob.beginUpload(header({ ...h, offset: status1.received }));
      await half.write(data.subarray(status1.received, 7 * MiB));
      await rejectsWith(half.end(), status.FAILED_PRECONDITION, /incomplete.*7340032/);
      assert.equal((await db.blob.uploadStatus('resume-1')).received, 7 * MiB);
      const res = await upload(db.blob, data, { ...h, offset: 7 * MiB });
      assert.ok(res.sha256.equals(sha));
      assert.ok((await download(db.blob, res.id)).equals(data));
      assert.deepEqual(await db.blob.uploadStatus('resume-1'), { received: 0, exists: false });
      assert.deepEqual(await db.blob.uploadStatus('never-begun'), { received: 0, exists: false });
    });

    it('a resumable upload survives closing the store', async () => {
      let db = await reopen('resume-reopen');
      const data = pattern(6 * MiB, 41);
      const h = { uploadId: 'resume-2', size: data.length };
      const u = await db.blob.beginUpload(header(h));
      await u.write(data.subarray(0, 4 * MiB + 1));
      await u.interrupted();
      await db.close();
      db = await reopen('resume-reopen');
      try {
        const { received } = await db.blob.uploadStatus('resume-2');
        assert.equal(received, 4 * MiB + 1);
        const res = await upload(db.blob, data, { ...h, offset: received });
        assert.ok((await download(db.blob, res.id)).equals(data));
        assert.ok(
          res.sha256.equals(createHash('sha256').update(data).digest()),
          'the hash covers bytes from before the restart',
        );
      } finally {
        await db.close();
      }
    });

    it('in a transaction: the uploaded blob is invisible until commit; a rollback leaves nothing', async () => {
      const db = dbOf();
      const data = pattern(2 * MiB + 9, 51);
      const tx = db.beginTransaction();
      const inTx = db.blobFor(tx.id);
      const res = await upload(inTx, data, { metadata: 'tx' });
      assert.ok((await download(inTx, res.id)).equals(data), 'the transaction sees its own upload');
      await rejectsWith(db.blob.openReader(res.id), status.NOT_FOUND, /not found/);
      await tx.commit();
      assert.ok((await download(db.blob, res.id)).equals(data));
      const tx2 = db.beginTransaction();
      const gone = await upload(db.blobFor(tx2.id), pattern(MiB, 52));
      await tx2.rollback();
      await rejectsWith(db.blob.openReader(gone.id), status.NOT_FOUND, /not found/);
    });

    it('Get of a blob larger than one message is RESOURCE_EXHAUSTED naming Download; EqData compares by hash', async () => {
      const small = await reopen('small-messages', { maxMessageSize: 2 * MiB });
      try {
        const data = pattern(small.blob.maxGetBytes + 1, 61);
        const a = await upload(small.blob, data);
        await rejectsWith(small.blob.getBlob(a.id), status.RESOURCE_EXHAUSTED, /Download/);
        const b = await upload(small.blob, data);
        const digests = await Promise.all(
          [a.id, b.id].map(
            (id) => new Promise<Buffer>((res, rej) => small.blob.digest(id, (e, d) => (e ? rej(e) : res(d!)))),
          ),
        );
        assert.ok(digests[0]!.equals(digests[1]!));
      } finally {
        await small.close();
      }
    });

    it("the backend's maxBlobBytes is the store's limit: a declared one refuses limit+1 bytes at beginUpload", async () => {
      const db = dbOf();
      const declared = db.backend.capabilities.maxBlobBytes;
      assert.deepEqual(db.blob.limit, declared === null ? undefined : { backend: db.backend.name, bytes: declared });
      if (declared !== null) {
        await rejectsWith(
          db.blob.beginUpload(header({ size: declared + 1 })),
          status.RESOURCE_EXHAUSTED,
          new RegExp(`the ${db.backend.name} backend stores blobs of at most .*this one is ${declared + 1} bytes`),
        );
      }
    });

    it('over a maxBlobBytes limit: Upload (with or without size), Store and Update are RESOURCE_EXHAUSTED, nothing stored', async () => {
      const base = dbOf().backend;
      const limit = 2 * MiB;
      const limited = { ...base, capabilities: { ...base.capabilities, maxBlobBytes: limit } };
      const db = await reopen('blob-limit', { backend: limited });
      try {
        const tooLarge = new RegExp(`the ${base.name} backend stores blobs of at most 2 MiB`);
        const kept = pattern(MiB, 71);
        const existing = await upload(db.blob, kept, { metadata: 'kept' });
        const rows = await chunkRows(db.blob);
        await rejectsWith(
          db.blob.beginUpload(header({ size: limit + 1 })),
          status.RESOURCE_EXHAUSTED,
          /at most 2 MiB \(this one is 2097153 bytes\)/,
        );
        // No size: refused once the bytes pass the limit; a resumable upload's state goes with it.
        const h = { uploadId: 'over-limit', id: BigInt(existing.id) };
        await rejectsWith(upload(db.blob, pattern(limit + 1, 72), h), status.RESOURCE_EXHAUSTED, tooLarge);
        assert.deepEqual(await db.blob.uploadStatus('over-limit'), { received: 0, exists: false });
        await db.blob.large.collect();
        assert.equal(await chunkRows(db.blob), rows, 'no chunk of the refused upload stays');
        assert.ok((await download(db.blob, existing.id)).equals(kept), 'the blob it was to replace is untouched');
        await rejectsWith(db.blob.storeBlob(pattern(limit + 1, 73)), status.RESOURCE_EXHAUSTED, tooLarge);
        await rejectsWith(
          db.blob.updateBlob(existing.id, { bytes: pattern(limit + 1, 74), shouldUpdateMetadata: false }),
          status.RESOURCE_EXHAUSTED,
          tooLarge,
        );
        const tx = db.beginTransaction();
        const inTx = db.blobFor(tx.id);
        await rejectsWith(
          new Promise((resolve, reject) =>
            inTx.store(pattern(limit + 1, 75), undefined, (err, id) => (err ? reject(err) : resolve(id))),
          ),
          status.RESOURCE_EXHAUSTED,
          tooLarge,
        );
        await tx.rollback();
        assert.ok((await download(db.blob, existing.id)).equals(kept));
        // Exactly the limit is stored, by every way in.
        const atLimit = pattern(limit, 76);
        const res = await upload(db.blob, atLimit, { uploadId: 'over-limit' });
        assert.ok((await download(db.blob, res.id)).equals(atLimit));
        const stored = await db.blob.storeBlob(atLimit);
        assert.ok(Buffer.from((await db.blob.getBlob(stored)).data).equals(atLimit));
      } finally {
        await db.close();
      }
    });
  });
}
