/**
 * The backup archive: one file, written and checked in a single pass with bounded memory.
 *
 *   "BUFFDB-BACKUP 1\n"
 *   record: u32 big-endian length + JSON
 *     {"type":"header","version":1,"backend":"sqlite","created":"…","files":N}
 *   N times: record {"type":"file","store":"kv"|"blob","name":"","size":S}, S bytes, 32-byte SHA-256 of them
 *   record {"type":"end","files":N}, then the 32-byte SHA-256 of every byte before it
 *
 * `name` is the file's path relative to its store path ("" = the store file, "-rocksdb/000012.sst" …).
 * A truncated or damaged archive is refused with one line saying where.
 */
import { createHash, type Hash } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { open } from 'node:fs/promises';
import type { SnapshotFile, StoreName } from './snapshot.js';

const MAGIC = Buffer.from('BUFFDB-BACKUP 1\n', 'latin1');
const CHUNK = 1024 * 1024;
/** A record is small JSON; anything larger is damage, not a record. */
const MAX_RECORD = 64 * 1024;

interface Header {
  type: 'header';
  version: 1;
  backend: string;
  created: string;
  files: number;
}
interface FileRecord {
  type: 'file';
  store: StoreName;
  name: string;
  size: number;
}

export interface ArchiveInfo {
  backend: string;
  created: string;
  files: { store: StoreName; name: string; size: number }[];
}

function record(value: object): Buffer {
  const json = Buffer.from(JSON.stringify(value), 'utf8');
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(json.length);
  return Buffer.concat([len, json]);
}

/** The archive of `files` as a stream of chunks (at most 1 MiB each). */
export async function* archiveChunks(backend: string, files: SnapshotFile[]): AsyncGenerator<Buffer> {
  const whole = createHash('sha256');
  const emit = (b: Buffer): Buffer => {
    whole.update(b);
    return b;
  };
  yield emit(MAGIC);
  const header: Header = {
    type: 'header',
    version: 1,
    backend,
    created: new Date().toISOString(),
    files: files.length,
  };
  yield emit(record(header));
  for (const f of files) {
    const rec: FileRecord = { type: 'file', store: f.store, name: f.name, size: f.size };
    yield emit(record(rec));
    const own = createHash('sha256');
    const fh = await open(f.path, 'r');
    try {
      let left = f.size;
      while (left > 0) {
        const buf = Buffer.allocUnsafe(Math.min(CHUNK, left));
        const { bytesRead } = await fh.read(buf, 0, buf.length, null);
        if (bytesRead === 0) throw new Error(`backup copy ${f.path} shrank while it was archived`);
        const chunk = buf.subarray(0, bytesRead);
        own.update(chunk);
        left -= bytesRead;
        yield emit(chunk);
      }
    } finally {
      await fh.close();
    }
    yield emit(own.digest());
  }
  yield emit(record({ type: 'end', files: files.length }));
  yield whole.digest();
}

/** Reads an archive file front to back, hashing as it goes. */
class ArchiveReader {
  private offset = 0;

  constructor(
    private readonly fh: FileHandle,
    private readonly path: string,
    private readonly size: number,
    readonly whole: Hash,
  ) {}

  damaged(what: string): Error {
    return new Error(`backup ${this.path} is damaged: ${what} (at byte ${this.offset})`);
  }

  /** Exactly `n` bytes, or a "truncated" error. */
  async exact(n: number, hash = true): Promise<Buffer> {
    if (this.offset + n > this.size) {
      throw new Error(`backup ${this.path} is truncated: it ends at byte ${this.size}, before the end of the archive`);
    }
    const buf = Buffer.allocUnsafe(n);
    let filled = 0;
    while (filled < n) {
      const { bytesRead } = await this.fh.read(buf, filled, n - filled, this.offset + filled);
      if (bytesRead === 0) throw new Error(`backup ${this.path} is truncated at byte ${this.offset + filled}`);
      filled += bytesRead;
    }
    this.offset += n;
    if (hash) this.whole.update(buf);
    return buf;
  }

  async record<T>(): Promise<T> {
    const len = (await this.exact(4)).readUInt32BE(0);
    if (len > MAX_RECORD) throw this.damaged('a record is impossibly large');
    try {
      return JSON.parse((await this.exact(len)).toString('utf8')) as T;
    } catch (err) {
      if (err instanceof SyntaxError) throw this.damaged('a record is not valid JSON');
      throw err;
    }
  }

  get atEnd(): boolean {
    return this.offset === this.size;
  }

  get position(): number {
    return this.offset;
  }
}

/**
 * Checks the archive at `path` completely (structure, every file's checksum, the whole-archive
 * checksum) and calls `onFile` with each file's bytes in chunks as it goes; nothing is trusted
 * until this resolves. Throws one line naming the problem.
 */
export async function readArchive(
  path: string,
  onFile?: (file: { store: StoreName; name: string; size: number }, chunk: Buffer | null) => Promise<void>,
): Promise<ArchiveInfo> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new Error(`cannot read the backup ${path}: ${e.code === 'ENOENT' ? 'no such file' : e.message}`);
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) throw new Error(`cannot read the backup ${path}: not a file`);
    const r = new ArchiveReader(fh, path, st.size, createHash('sha256'));
    if (st.size < MAGIC.length || !(await r.exact(MAGIC.length)).equals(MAGIC)) {
      throw new Error(`${path} is not a buffdb backup`);
    }
    const header = await r.record<Header>();
    if (header.type !== 'header' || header.version !== 1 || typeof header.backend !== 'string') {
      throw r.damaged('the header is not a buffdb backup header');
    }
    const info: ArchiveInfo = { backend: header.backend, created: header.created, files: [] };
    for (let i = 0; i < header.files; i++) {
      const f = await r.record<FileRecord>();
      const validName = typeof f.name === 'string' && !f.name.includes('..') && !f.name.includes('\0');
      if (
        f.type !== 'file' ||
        (f.store !== 'kv' && f.store !== 'blob') ||
        !validName ||
        !Number.isSafeInteger(f.size)
      ) {
        throw r.damaged(`file record ${i + 1} is not valid`);
      }
      const file = { store: f.store, name: f.name, size: f.size };
      const own = createHash('sha256');
      for (let left = f.size; left > 0; ) {
        const chunk = await r.exact(Math.min(CHUNK, left));
        own.update(chunk);
        left -= chunk.length;
        await onFile?.(file, chunk);
      }
      if (!(await r.exact(32)).equals(own.digest())) {
        throw r.damaged(`the ${f.store} store file ${JSON.stringify(f.name || 'store')} does not match its checksum`);
      }
      await onFile?.(file, null);
      info.files.push(file);
    }
    const end = await r.record<{ type: string; files: number }>();
    if (end.type !== 'end' || end.files !== header.files) throw r.damaged('the end record is missing');
    const expected = r.whole.digest();
    if (!(await r.exact(32, false)).equals(expected)) throw r.damaged('the archive checksum does not match');
    if (!r.atEnd) throw r.damaged(`${st.size - r.position} unexpected bytes after the end`);
    return info;
  } finally {
    await fh.close();
  }
}
