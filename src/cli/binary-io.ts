/**
 * Byte-exact input and output for the CLI. Large blobs are read into one buffer of the final size
 * when the size is known (a file, or stdin redirected from a file) and written to stdout in chunks
 * that respect backpressure, so memory stays at the blob plus a chunk or two.
 */

import { constants as bufferConstants } from 'node:buffer';
import { once } from 'node:events';
import { fstatSync, read } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { promisify } from 'node:util';
import { CliError, EXIT } from './exit-codes.js';

const CHUNK = 1024 * 1024;
/** Below this, a progress line would only flicker. */
const PROGRESS_MIN_BYTES = 4 * CHUNK;

/** Reads up to `length` bytes at the current position; 0 at EOF. */
type Reader = (buf: Buffer, offset: number, length: number) => Promise<number>;

const fileReader =
  (fh: FileHandle): Reader =>
  async (buf, offset, length) =>
    (await fh.read(buf, offset, length, null)).bytesRead;

const readFd = promisify(read);
/** fd 0 itself, so reading starts where the shell left the file offset. */
const stdinFileReader: Reader = async (buf, offset, length) => (await readFd(0, buf, offset, length, null)).bytesRead;

const mib = (n: number): string => `${(n / CHUNK).toFixed(1)} MiB`;

/** A progress line on stderr, shown only when stderr is a terminal and the transfer is large. */
export class Progress {
  private readonly enabled: boolean;
  private last = 0;
  private shown = false;

  constructor(
    private readonly label: string,
    private readonly total: number | undefined,
  ) {
    this.enabled = process.stderr.isTTY === true && (total === undefined || total >= PROGRESS_MIN_BYTES);
  }

  update(done: number): void {
    if (!this.enabled) return;
    if (this.total === undefined && done < PROGRESS_MIN_BYTES) return;
    const now = Date.now();
    if (now - this.last < 100 && done !== this.total) return;
    this.last = now;
    this.shown = true;
    const text =
      this.total === undefined
        ? `${this.label} ${mib(done)}`
        : `${this.label} ${mib(done)} / ${mib(this.total)} (${Math.floor((done / Math.max(this.total, 1)) * 100)}%)`;
    process.stderr.write(`\r\x1b[2K${text}`);
  }

  /** Clears the line so the next output starts clean. */
  finish(): void {
    if (this.shown) process.stderr.write('\r\x1b[2K');
    this.shown = false;
  }
}

function ioError(what: string, err: unknown): CliError {
  const e = err as NodeJS.ErrnoException;
  const reason =
    e.code === 'ENOENT'
      ? 'no such file'
      : e.code === 'EACCES' || e.code === 'EPERM'
        ? 'permission denied'
        : e.code === 'EISDIR'
          ? 'is a directory'
          : e.message;
  return new CliError(EXIT.FAILURE, `cannot read ${what}: ${reason}`);
}

/** Reads until EOF from the current position, into one buffer of `sizeHint` bytes while the data fits. */
async function readKnownSize(readInto: Reader, sizeHint: number, progress: Progress): Promise<Buffer> {
  const buf = Buffer.allocUnsafe(sizeHint);
  let filled = 0;
  for (;;) {
    if (filled === buf.length) {
      // Full: check for EOF. Only a file that grew while we read it has more.
      const extra = Buffer.allocUnsafe(CHUNK);
      const bytesRead = await readInto(extra, 0, CHUNK);
      if (bytesRead === 0) return buf;
      const rest = await readUnknownSize(readInto, progress, extra.subarray(0, bytesRead));
      return Buffer.concat([buf, rest]);
    }
    const bytesRead = await readInto(buf, filled, Math.min(CHUNK, buf.length - filled));
    if (bytesRead === 0) return buf.subarray(0, filled);
    filled += bytesRead;
    progress.update(filled);
  }
}

interface ResizableArrayBuffer extends ArrayBuffer {
  resize(byteLength: number): void;
}
const ResizableArrayBufferCtor = ArrayBuffer as unknown as new (
  length: number,
  options: { maxByteLength: number },
) => ResizableArrayBuffer;

/**
 * Bytes of a size known only at EOF. A resizable ArrayBuffer reserves address space and grows in
 * place, so the input is held once, plus one chunk (no final concatenation doubling the peak).
 * Where one cannot be reserved, chunks are joined at the end instead.
 */
class GrowableBytes {
  private ab: ResizableArrayBuffer | undefined;
  private readonly chunks: Buffer[] = [];
  length = 0;

  constructor() {
    try {
      this.ab = new ResizableArrayBufferCtor(0, { maxByteLength: bufferConstants.MAX_LENGTH });
    } catch {
      this.ab = undefined;
    }
  }

  append(chunk: Uint8Array): void {
    if (this.ab) {
      this.ab.resize(this.length + chunk.length);
      new Uint8Array(this.ab, this.length, chunk.length).set(chunk);
    } else {
      this.chunks.push(Buffer.from(chunk));
    }
    this.length += chunk.length;
  }

  bytes(): Buffer {
    return this.ab ? Buffer.from(this.ab, 0, this.length) : Buffer.concat(this.chunks, this.length);
  }
}

async function readUnknownSize(readInto: Reader, progress: Progress, head?: Uint8Array): Promise<Buffer> {
  const out = new GrowableBytes();
  if (head) out.append(head);
  const chunk = Buffer.allocUnsafe(CHUNK);
  for (;;) {
    const bytesRead = await readInto(chunk, 0, CHUNK);
    if (bytesRead === 0) return out.bytes();
    out.append(chunk.subarray(0, bytesRead));
    progress.update(out.length);
  }
}

async function readStdin(): Promise<Buffer> {
  let size: number | undefined;
  try {
    const st = fstatSync(0);
    if (st.isFile()) size = st.size;
  } catch {
    // stdin closed: read() below reports nothing, an empty blob.
  }
  const progress = new Progress('reading stdin', size);
  try {
    // Redirected from a file: read straight into a buffer of the right size.
    if (size !== undefined) return await readKnownSize(stdinFileReader, size, progress);
    // A pipe or terminal: the size is known only at EOF.
    const out = new GrowableBytes();
    for await (const chunk of process.stdin) {
      out.append(chunk as Buffer);
      progress.update(out.length);
    }
    return out.bytes();
  } catch (err) {
    throw ioError('stdin', err);
  } finally {
    progress.finish();
  }
}

/** All bytes of FILE, or of stdin for `-`. */
export async function readInput(file: string): Promise<Buffer> {
  if (file === '-') return readStdin();
  let fh: FileHandle;
  try {
    fh = await open(file, 'r');
  } catch (err) {
    throw ioError(file, err);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
    const progress = new Progress(`reading ${file}`, st.isFile() ? st.size : undefined);
    try {
      const reader = fileReader(fh);
      return st.isFile() ? await readKnownSize(reader, st.size, progress) : await readUnknownSize(reader, progress);
    } finally {
      progress.finish();
    }
  } catch (err) {
    throw err instanceof CliError ? err : ioError(file, err);
  } finally {
    await fh.close();
  }
}

/** Writes bytes to stdout in chunks, waiting for the pipe to drain between them. */
export async function writeOutput(data: Uint8Array, label = 'writing'): Promise<void> {
  const out = process.stdout;
  const progress = new Progress(label, data.length);
  try {
    for (let off = 0; off < data.length; off += CHUNK) {
      const end = Math.min(off + CHUNK, data.length);
      if (!out.write(data.subarray(off, end))) await once(out, 'drain');
      progress.update(end);
    }
  } finally {
    progress.finish();
  }
}
