/**
 * Byte-exact input and output for the CLI, streamed: input is read in 1 MiB chunks as it is
 * consumed and output written to stdout in chunks that respect backpressure, so memory stays at a
 * chunk or two whatever the size.
 */

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

/**
 * The bytes of FILE (or of stdin for `-`) as fresh 1 MiB buffers, read as they are consumed: memory
 * stays at a chunk or two whatever the size. The file is opened before this resolves, so a missing
 * file fails before anything else happens; a read error later fails the iteration.
 */
export async function inputChunks(file: string): Promise<{ size: number | undefined; chunks: AsyncGenerator<Buffer> }> {
  const what = file === '-' ? 'stdin' : file;
  let reader: Reader;
  let size: number | undefined;
  let close = async (): Promise<void> => {};
  let piped: AsyncIterator<Buffer> | undefined;
  if (file === '-') {
    try {
      const st = fstatSync(0);
      if (st.isFile()) size = st.size;
    } catch {
      // stdin closed: read() below reports nothing, an empty blob.
    }
    reader = stdinFileReader;
    // A pipe or terminal: Node's stream reads it.
    if (size === undefined) piped = (process.stdin as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  } else {
    let fh: FileHandle;
    try {
      fh = await open(file, 'r');
      const st = await fh.stat();
      if (st.isDirectory()) {
        await fh.close();
        throw Object.assign(new Error('is a directory'), { code: 'EISDIR' });
      }
      if (st.isFile()) size = st.size;
    } catch (err) {
      throw ioError(file, err);
    }
    reader = fileReader(fh);
    close = () => fh.close();
  }
  const progress = new Progress(`reading ${what}`, size);
  async function* chunks(): AsyncGenerator<Buffer> {
    let done = 0;
    try {
      for (;;) {
        let chunk: Buffer;
        if (piped) {
          const next = await piped.next();
          if (next.done) return;
          chunk = next.value;
        } else {
          const buf = Buffer.allocUnsafe(CHUNK);
          const bytesRead = await reader(buf, 0, CHUNK);
          if (bytesRead === 0) return;
          chunk = bytesRead === CHUNK ? buf : Buffer.from(buf.subarray(0, bytesRead));
        }
        done += chunk.length;
        progress.update(done);
        yield chunk;
      }
    } catch (err) {
      throw err instanceof CliError ? err : ioError(what, err);
    } finally {
      progress.finish();
      await close();
    }
  }
  return { size, chunks: chunks() };
}

/**
 * Reads `source` until more than `limit` bytes have come or it ends. `whole`: all of it, when it
 * ended within the limit; otherwise `rest` yields everything (the bytes read so far first).
 */
export async function peekInput(
  source: AsyncGenerator<Buffer>,
  limit: number,
): Promise<{ whole: Buffer | undefined; rest: AsyncGenerator<Buffer> }> {
  const head: Buffer[] = [];
  let bytes = 0;
  while (bytes <= limit) {
    const next = await source.next();
    if (next.done) return { whole: Buffer.concat(head, bytes), rest: source };
    head.push(next.value);
    bytes += next.value.length;
  }
  async function* rest(): AsyncGenerator<Buffer> {
    yield* head.splice(0);
    yield* source;
  }
  return { whole: undefined, rest: rest() };
}

/** Writes bytes to stdout in chunks, waiting for the pipe to drain between them. */
export function writeOutput(data: Uint8Array, label = 'writing'): Promise<void> {
  function* slices(): Generator<Uint8Array> {
    for (let off = 0; off < data.length; off += CHUNK) yield data.subarray(off, Math.min(off + CHUNK, data.length));
  }
  return writeChunks(slices(), data.length, label);
}

/** Writes a stream of `total` bytes to stdout as it comes, waiting for the pipe to drain. */
export async function writeChunks(
  chunks: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  total: number,
  label = 'writing',
): Promise<void> {
  const out = process.stdout;
  const progress = new Progress(label, total);
  let done = 0;
  try {
    for await (const chunk of chunks) {
      if (!out.write(chunk)) await once(out, 'drain');
      done += chunk.length;
      progress.update(done);
    }
  } finally {
    progress.finish();
  }
}
