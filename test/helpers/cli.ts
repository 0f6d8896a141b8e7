/** Running the built `buffdb` command as users run it, and checking its one-line errors. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { CLI } from './server.js';

export interface Result {
  status: number | null;
  stdout: Buffer;
  out: string;
  stderr: string;
}

export function run(cwd: string, args: string[], input?: Buffer | string | number): Result {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    input: typeof input === 'number' ? undefined : input,
    stdio: [typeof input === 'number' ? input : 'pipe', 'pipe', 'pipe'],
    maxBuffer: 512 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, out: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}

/** Exactly one line on stderr, mentioning `needle`, and no stack trace. */
export function assertOneLineError(r: Result, status: number, needle: string | RegExp): void {
  assert.equal(r.status, status, `exit status; stderr: ${r.stderr}`);
  assert.match(r.stderr, /^buffdb: [^\n]+\n$/, `one line on stderr: ${JSON.stringify(r.stderr)}`);
  if (typeof needle === 'string')
    assert.ok(r.stderr.includes(needle), `stderr ${JSON.stringify(r.stderr)} names ${needle}`);
  else assert.match(r.stderr, needle);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
}

export function ok(r: Result): Result {
  assert.equal(r.status, 0, `exit 0 expected; stderr: ${r.stderr}`);
  return r;
}
