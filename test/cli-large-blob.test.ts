/**
 * `buffdb blob store` / `get` of a ~300 MB file stream it: the CLI's peak RSS stays flat (well
 * under the file's size) on a store file and against a server (--addr, Upload and Download), and
 * the bytes come back exactly (SHA-256 of the file and of what `get` wrote). --range on a large blob.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  closeSync,
  createReadStream,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, ROOT, type ServerProcess, spawnServer, tempDir } from './helpers/server.js';

const SIZE = 300 * 1000 * 1000 + 12_345;
const PEAK_LIMIT = 160 * 1024 * 1024;
const PEAK_HELPER = join(ROOT, 'test', 'helpers', 'report-peak-rss.mjs');

/** Writes SIZE deterministic bytes (a 1 MiB block, each copy stamped with its index), hashing as it goes. */
function generate(path: string): string {
  const block = Buffer.alloc(1024 * 1024);
  for (let i = 0, x = 0x9e3779b9; i < block.length; i += 4) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    block.writeUInt32LE(x, i);
  }
  const hash = createHash('sha256');
  const fd = openSync(path, 'w');
  try {
    for (let at = 0, i = 0; at < SIZE; at += block.length, i++) {
      block.writeUInt32LE(i, 0);
      const piece = block.subarray(0, Math.min(block.length, SIZE - at));
      hash.update(piece);
      writeSync(fd, piece);
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

interface Run {
  status: number | null;
  stderr: string;
  /** SHA-256 of stdout, and its length (stdout is hashed as it comes, never held). */
  sha256: string;
  bytes: number;
  /** The CLI process's peak RSS in bytes. */
  peak: number;
  stdout: Buffer;
}

/** Runs the CLI with `stdin` (a file piped in) and measures its peak RSS. */
function cli(cwd: string, args: string[], env: NodeJS.ProcessEnv, stdin?: string, keep = false): Promise<Run> {
  const peakFile = join(cwd, `peak-${process.hrtime.bigint()}`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', PEAK_HELPER, CLI, ...args], {
      cwd,
      env: { ...env, BUFFDB_PEAK_RSS_FILE: peakFile },
      stdio: [stdin === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    });
    if (stdin !== undefined) createReadStream(stdin).pipe(child.stdin!);
    const hash = createHash('sha256');
    let bytes = 0;
    const kept: Buffer[] = [];
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
      if (keep) kept.push(d);
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (status) => {
      const peak = Number(readFileSync(peakFile, 'utf8'));
      rmSync(peakFile);
      resolve({ status, stderr, sha256: hash.digest('hex'), bytes, peak, stdout: Buffer.concat(kept) });
    });
  });
}

const mib = (n: number): string => `${(n / 1024 / 1024).toFixed(0)} MiB`;

function assertFlat(r: Run, what: string): void {
  assert.equal(r.status, 0, `${what}: ${r.stderr}`);
  assert.ok(r.peak > 0 && r.peak < PEAK_LIMIT, `${what}: peak RSS ${mib(r.peak)} (limit ${mib(PEAK_LIMIT)})`);
}

function slice(path: string, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  const fd = openSync(path, 'r');
  try {
    return buf.subarray(0, readSync(fd, buf, 0, length, offset));
  } finally {
    closeSync(fd);
  }
}

describe('buffdb blob store / get of a large file: streamed, flat memory', () => {
  let dir: string;
  let file: string;
  let sha256: string;
  before(() => {
    dir = tempDir('buffdb-cli-large-');
    file = join(dir, 'large.bin');
    sha256 = generate(file);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  for (const remote of [false, true]) {
    describe(remote ? 'against a server (--addr)' : 'on a store file', () => {
      let server: ServerProcess | undefined;
      let env: NodeJS.ProcessEnv = process.env;
      const store = (): string => join(dir, remote ? 'remote-blob.db' : 'local-blob.db');
      before(async () => {
        if (!remote) return;
        server = await spawnServer(
          ['127.0.0.1:0', '--kv-store', 'srv-kv.db', '--blob-store', store(), '--log-level', 'warn'],
          dir,
        );
        env = { ...process.env, BUFFDB_ADDR: server.addr };
      });
      after(async () => {
        if (!server) return;
        server.child.kill('SIGTERM');
        await server.exited;
      });
      const args = (...a: string[]): string[] => (remote ? ['blob', ...a] : ['blob', ...a, '-s', store()]);

      test('store FILE, store - (a pipe), get and get --range: exact bytes, peak RSS flat', async () => {
        const started = Date.now();
        const stored = await cli(dir, args('store', file, 'large'), env, undefined, true);
        assertFlat(stored, 'store FILE');
        const piped = await cli(dir, args('store', '-'), env, file, true);
        assertFlat(piped, 'store -');
        const ids = [stored, piped].map((r) => r.stdout.toString());
        for (const id of ids) assert.match(id, /^\d+\n$/);
        const [firstId, secondId] = ids.map((id) => id.trim()) as [string, string];
        const meta = await cli(dir, args('get', firstId, 'metadata'), env, undefined, true);
        assert.equal(meta.stdout.toString(), 'large');
        const second = await cli(dir, args('get', secondId), env);
        assert.equal(second.sha256, sha256, 'the piped blob comes back exactly');
        const got = await cli(dir, args('get', firstId), env);
        assertFlat(got, 'get');
        assert.equal(got.bytes, SIZE);
        assert.equal(got.sha256, sha256, 'the bytes come back exactly');
        const offset = 123_456_789;
        const ranged = await cli(dir, args('get', firstId, '--range', `${offset}:3000000`), env, undefined, true);
        assert.equal(ranged.status, 0, ranged.stderr);
        assert.ok(ranged.stdout.equals(slice(file, offset, 3_000_000)));
        const tail = await cli(dir, args('get', firstId, '--range', `${SIZE - 10}:`), env, undefined, true);
        assert.ok(tail.stdout.equals(slice(file, SIZE - 10, 10)));
        // update … all FILE on a small blob: the large data replaces it through Upload (with its id).
        const small = join(dir, 'small.bin');
        writeFileSync(small, 'small');
        const tinyId = (await cli(dir, args('store', small, 'tiny'), env, undefined, true)).stdout.toString().trim();
        const updated = await cli(dir, args('update', tinyId, 'all', file, 'replaced'), env);
        assertFlat(updated, 'update all FILE');
        assert.equal((await cli(dir, args('get', tinyId), env)).sha256, sha256);
        const replaced = await cli(dir, args('get', tinyId, 'metadata'), env, undefined, true);
        assert.equal(replaced.stdout.toString(), 'replaced');
        assert.equal((await cli(dir, args('update', '987654', 'data', file), env)).status, 3);
        const past = await cli(dir, args('get', firstId, '--range', `${SIZE + 1}:1`), env);
        assert.equal(past.status, 4);
        assert.match(past.stderr, /^buffdb: offset \d+ is past the end of blob \d+ \(300012345 bytes\)\n$/);
        console.log(
          `${remote ? 'remote' : 'file'}: peak RSS store ${mib(stored.peak)}, store - ${mib(piped.peak)}, ` +
            `get ${mib(got.peak)}; ${Date.now() - started} ms`,
        );
      });
    });
  }
});
