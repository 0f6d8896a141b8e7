/**
 * The Upload part of the crash loop (scripts/torture.ts): clients also upload blobs of a few MiB
 * through the Upload stream — in one call, or resumable (upload_id) in several calls, each of
 * which the kill may cut — and after every restart:
 *  - every acknowledged upload is there: Download serves its size and SHA-256, and bytes that hash
 *    to it;
 *  - a resumable upload still holds at least the bytes UploadStatus reported durable before the
 *    kill, and a later call continues it at `offset = received` to completion;
 *  - an upload in flight at the kill either landed whole (a blob with its metadata tag, adopted) or
 *    left nothing (torture.ts's phantom check asks `adopt`).
 */
import { createHash } from 'node:crypto';
import type { ServiceError } from '@grpc/grpc-js';
import { downloadBlob, uploadBlob } from '../src/client/blob-transfer.js';
import type { BuffDbClients } from '../src/client/network.js';

const MiB = 1024 * 1024;

interface Acked {
  size: number;
  sha256: Buffer;
}

/** A resumable upload: its bytes, and the durable count UploadStatus last reported. */
interface Resumable {
  data: Buffer;
  sha256: Buffer;
  tag: string;
  durable: number;
  /** A call was running at the kill with all bytes sent: it may have completed. */
  mayHaveCompleted: boolean;
}

export class UploadTorture {
  acked = 0;
  resumedCalls = 0;
  completedResumable = 0;
  private readonly done = new Map<bigint, Acked>();
  private readonly resumable = new Map<string, Resumable>();
  /** Uploads whose answer was not seen: metadata tag → what they carry. */
  private readonly inFlight = new Map<string, Acked>();

  constructor(
    private readonly int: (n: number) => number,
    private readonly nonce: () => number,
    private readonly fail: (msg: string) => never,
    private readonly onId: (id: bigint) => void,
  ) {}

  /** Deterministic bytes of `size`, tagged at the front (so a landed in-flight upload is recognisable). */
  private bytes(size: number): Buffer {
    const data = Buffer.alloc(size);
    const seed = this.nonce();
    for (let i = 0; i + 4 <= size; i += 4096) data.writeUInt32LE((seed * 2654435761 + i) >>> 0, i);
    return data;
  }

  private ack(id: bigint, size: number, sha256: Buffer): void {
    if (this.done.has(id)) this.fail(`upload answered blob id ${id}, which was handed out before`);
    this.onId(id);
    this.done.set(id, { size, sha256 });
    this.acked++;
  }

  /** One upload step of client `who`: a one-call upload, or a call of a resumable one. */
  async write(c: BuffDbClients, who: number): Promise<ServiceError | undefined> {
    try {
      if (this.int(2) === 0) await this.oneCall(c);
      else await this.resumableCall(c, who);
      return undefined;
    } catch (err) {
      const e = err as ServiceError;
      if (typeof e.code !== 'number') throw err;
      return e;
    }
  }

  private async oneCall(c: BuffDbClients): Promise<void> {
    const data = this.bytes(MiB / 2 + this.int(3 * MiB));
    const sha256 = createHash('sha256').update(data).digest();
    const tag = `up-${this.nonce()}`;
    this.inFlight.set(tag, { size: data.length, sha256 });
    const res = await uploadBlob(c.blob, data, { metadata: tag, size: BigInt(data.length), sha256 });
    this.inFlight.delete(tag);
    this.ack(res.id, data.length, sha256);
  }

  private async resumableCall(c: BuffDbClients, who: number): Promise<void> {
    const mine = [...this.resumable.keys()].filter((k) => k.startsWith(`r${who}-`));
    let uploadId = mine[0];
    if (uploadId === undefined) {
      uploadId = `r${who}-${this.nonce()}`;
      const data = this.bytes(2 * MiB + this.int(6 * MiB));
      const sha256 = createHash('sha256').update(data).digest();
      this.resumable.set(uploadId, { data, sha256, tag: `res-${uploadId}`, durable: 0, mayHaveCompleted: false });
    } else {
      this.resumedCalls++;
    }
    const r = this.resumable.get(uploadId)!;
    const status = await this.status(c, uploadId);
    const offset = status.exists ? status.received : 0;
    // Up to the end, or a part of it (a call that ends early keeps what arrived).
    const end = this.int(2) === 0 ? r.data.length : Math.min(r.data.length, offset + this.int(4 * MiB));
    const header = { uploadId, metadata: r.tag, size: BigInt(r.data.length), sha256: r.sha256, offset: BigInt(offset) };
    r.mayHaveCompleted = end === r.data.length;
    if (r.mayHaveCompleted) this.inFlight.set(r.tag, { size: r.data.length, sha256: r.sha256 });
    try {
      const res = await uploadBlob(c.blob, r.data.subarray(offset, end), header);
      this.resumable.delete(uploadId);
      this.inFlight.delete(r.tag);
      this.completedResumable++;
      this.ack(res.id, r.data.length, r.sha256);
    } catch (err) {
      // An incomplete call is FAILED_PRECONDITION (9) naming where to go on: not a failure.
      if ((err as ServiceError).code !== 9) throw err;
      r.mayHaveCompleted = false;
      r.durable = (await this.status(c, uploadId)).received;
    }
  }

  private status(c: BuffDbClients, uploadId: string): Promise<{ received: number; exists: boolean }> {
    return new Promise((resolve, reject) =>
      c.blob.uploadStatus({ uploadId }, (err, s) =>
        err ? reject(err) : resolve({ received: Number(s!.received), exists: s!.exists }),
      ),
    );
  }

  /** A blob row the store holds that nobody acknowledged: an in-flight upload that landed? */
  adopt(id: bigint, metadata: string | null): boolean {
    const expected = metadata === null ? undefined : this.inFlight.get(metadata);
    if (expected === undefined) return this.done.has(id);
    this.inFlight.delete(metadata!);
    this.ack(id, expected.size, expected.sha256);
    return true;
  }

  /** After a restart: acknowledged uploads are whole, resumable ones kept their durable bytes. */
  async check(c: BuffDbClients, loop: number): Promise<void> {
    for (const [id, want] of this.done) {
      const stream = downloadBlob(c.blob, id);
      const header = await stream.header.catch((err: ServiceError) =>
        this.fail(`loop ${loop}: acknowledged upload ${id} cannot be downloaded: ${err.details}`),
      );
      const hash = createHash('sha256');
      let size = 0;
      for await (const chunk of stream as AsyncIterable<Buffer>) {
        hash.update(chunk);
        size += chunk.length;
      }
      if (Number(header.size) !== want.size || size !== want.size || !header.sha256.equals(want.sha256)) {
        this.fail(`loop ${loop}: acknowledged upload ${id} has ${size} bytes, not its ${want.size}`);
      }
      if (!hash.digest().equals(want.sha256))
        this.fail(`loop ${loop}: upload ${id}'s bytes do not hash to its SHA-256`);
    }
    for (const [uploadId, r] of this.resumable) {
      const status = await this.status(c, uploadId);
      if (!status.exists && r.mayHaveCompleted) {
        // Its last call sent everything and may have completed before the kill: the phantom check
        // adopts the blob if it landed; either way the upload is over.
        this.resumable.delete(uploadId);
        continue;
      }
      if (status.received < r.durable) {
        this.fail(
          `loop ${loop}: resumable upload ${uploadId} holds ${status.received} bytes, ${r.durable} were durable`,
        );
      }
      r.durable = status.received;
    }
    // Answers lost at the kill that the store does not show are gone (one-call uploads store nothing).
    this.inFlight.clear();
  }
}
