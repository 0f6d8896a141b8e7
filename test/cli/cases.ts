/**
 * The kv and blob CLI cases, written once and run twice: on the store files (cli.test.ts) and
 * against a `buffdb run` server on those files (cli-remote.test.ts, BUFFDB_ADDR in every command's
 * environment). Same commands, same expected bytes, same exit statuses.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, type ServerProcess, spawnServer, tempDir } from '../helpers/server.js';

export interface Result {
  status: number | null;
  stdout: Buffer;
  out: string;
  stderr: string;
}

/**
 * The kv and blob suites run twice: on the store files, and against a `buffdb run` server on those
 * files (BUFFDB_ADDR in every command's environment). Same commands, same expected bytes and statuses.
 */
export interface Mode {
  name: string;
  remote: boolean;
}
export const MODES: Mode[] = [
  { name: 'store file', remote: false },
  { name: 'server (--addr)', remote: true },
];
/** Environment of every CLI invocation (BUFFDB_ADDR while a remote suite runs). */
let cliEnv: NodeJS.ProcessEnv = process.env;

/** In remote mode: a server on `dir`'s default stores, and every command pointed at it. */
function serveDir(mode: Mode, dir: () => string): { start(): Promise<void>; stop(): Promise<void> } {
  let server: ServerProcess | undefined;
  return {
    async start() {
      if (!mode.remote) return;
      server = await spawnServer(['127.0.0.1:0', '--log-level', 'warn'], dir());
      cliEnv = { ...process.env, BUFFDB_ADDR: server.addr };
    },
    async stop() {
      cliEnv = process.env;
      if (!server) return;
      server.child.kill('SIGTERM');
      await server.exited;
    },
  };
}

const FILE_ONLY = 'about store files: -s and -b, damaged files';

export function run(cwd: string, args: string[], input?: Buffer | string | number): Result {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd,
    env: cliEnv,
    input: typeof input === 'number' ? undefined : input,
    stdio: [typeof input === 'number' ? input : 'pipe', 'pipe', 'pipe'],
    maxBuffer: 512 * 1024 * 1024,
  });
  return { status: r.status, stdout: r.stdout, out: r.stdout.toString('utf8'), stderr: r.stderr.toString('utf8') };
}

/** Runs independent invocations a few at a time (each is a whole Node process start). */
export async function runAll(cwd: string, list: string[][], concurrency = 4): Promise<Result[]> {
  const results: Result[] = new Array(list.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < list.length) {
      const i = next++;
      results[i] = await new Promise<Result>((resolve, reject) => {
        const child = spawn(process.execPath, [CLI, ...list[i]!], {
          cwd,
          env: cliEnv,
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        const out: Buffer[] = [];
        const err: Buffer[] = [];
        child.stdout.on('data', (d: Buffer) => out.push(d));
        child.stderr.on('data', (d: Buffer) => err.push(d));
        child.on('error', reject);
        child.on('close', (status) => {
          const stdout = Buffer.concat(out);
          resolve({ status, stdout, out: stdout.toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
        });
      });
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  return results;
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

export const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

export function kvCases(mode: Mode): void {
  describe(`buffdb kv (${mode.name})`, () => {
    let dir: string;
    const server = serveDir(mode, () => dir);
    before(async () => {
      dir = tempDir('buffdb-cli-kv-');
      await server.start();
    });
    after(async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    test('set then get, in kv_store.db by default; the value comes back byte for byte with no newline', () => {
      assert.equal(ok(run(dir, ['kv', 'set', 'greeting', 'hello world'])).out, '');
      assert.ok(existsSync(join(dir, 'kv_store.db')));
      assert.equal(ok(run(dir, ['kv', 'get', 'greeting'])).out, 'hello world');
      ok(run(dir, ['kv', 'set', 'greeting', 'replaced']));
      assert.equal(ok(run(dir, ['kv', 'get', 'greeting'])).out, 'replaced');
    });

    test('unicode keys and values, empty values, newlines and tabs survive exactly', async () => {
      const pairs: [string, string][] = [
        ['ключ', 'значение'],
        ['🦁', 'buffdb 🦁 λ ∑ 𝄞'],
        ['日本語キー', '値\n二行目\tタブ'],
        ['empty', ''],
        ['trailing newline', 'line\n'],
        ['spaces  ', '  both  '],
      ];
      for (const [k, v] of pairs) ok(run(dir, ['kv', 'set', k, v]));
      const got = await runAll(
        dir,
        pairs.map(([k]) => ['kv', 'get', k]),
      );
      for (const [i, [k, v]] of pairs.entries()) assert.equal(ok(got[i]!).out, v, k);
    });

    test('get with several keys: values in order separated by NUL, no trailing separator', () => {
      ok(run(dir, ['kv', 'set', 'a', 'one']));
      ok(run(dir, ['kv', 'set', 'b', 'two']));
      ok(run(dir, ['kv', 'set', 'e', '']));
      assert.deepEqual(ok(run(dir, ['kv', 'get', 'b', 'a', 'e', 'b'])).stdout, Buffer.from('two\0one\0\0two'));
    });

    test('values and keys that look like options, after --', () => {
      ok(run(dir, ['kv', 'set', 'offset', '-5']));
      assert.equal(ok(run(dir, ['kv', 'get', 'offset'])).out, '-5');
      ok(run(dir, ['kv', 'set', '--', '-k', '--not-an-option']));
      assert.equal(ok(run(dir, ['kv', 'get', '--', '-k'])).out, '--not-an-option');
      ok(run(dir, ['kv', 'delete', '--', '-k']));
    });

    test('missing keys: get, delete, eq and not-eq exit 3 naming the key; get prints nothing', async () => {
      const [g, d, e, n, r] = await runAll(dir, [
        ['kv', 'get', 'a', 'no-such-key'],
        ['kv', 'delete', 'no-such-key'],
        ['kv', 'eq', 'a', 'no-such-key'],
        ['kv', 'not-eq', 'no-such-key', 'a'],
        ['kv', 'rm', 'ключ-нет'],
      ]);
      assertOneLineError(g!, 3, 'key not found: "no-such-key"');
      assert.equal(g!.stdout.length, 0);
      assertOneLineError(d!, 3, 'no-such-key');
      assertOneLineError(e!, 3, 'no-such-key');
      assertOneLineError(n!, 3, 'no-such-key');
      assertOneLineError(r!, 3, 'ключ-нет');
    });

    test('delete removes the key', () => {
      ok(run(dir, ['kv', 'set', 'gone', 'soon']));
      ok(run(dir, ['kv', 'delete', 'gone']));
      assertOneLineError(run(dir, ['kv', 'get', 'gone']), 3, '"gone"');
    });

    test('eq and not-eq: 0 when the comparison holds, 1 when it does not, silent either way', async () => {
      ok(run(dir, ['kv', 'set', 'x1', 'same']));
      ok(run(dir, ['kv', 'set', 'x2', 'same']));
      ok(run(dir, ['kv', 'set', 'x3', 'other']));
      const cases: [string[], number][] = [
        [['eq', 'x1', 'x2'], 0],
        [['eq', 'x1'], 0],
        [['eq', 'x1', 'x2', 'x3'], 1],
        [['not-eq', 'x1', 'x3'], 0],
        [['not-eq', 'x1', 'x3', 'x2'], 1],
        // Once the answer is known the rest is not needed, as in the gRPC Eq stream.
        [['eq', 'x1', 'x3', 'missing'], 1],
        ...['equal', 'equals'].flatMap((a): [string[], number][] => [
          [[a, 'x1', 'x2'], 0],
          [[a, 'x1', 'x3'], 1],
        ]),
        ...['unique', 'ne', 'neq'].flatMap((a): [string[], number][] => [
          [[a, 'x1', 'x3'], 0],
          [[a, 'x1', 'x2'], 1],
        ]),
      ];
      const results = await runAll(
        dir,
        cases.map(([args]) => ['kv', ...args]),
      );
      for (const [i, [args, status]] of cases.entries()) {
        assert.equal(results[i]!.status, status, `${args.join(' ')}: ${results[i]!.stderr}`);
        assert.equal(results[i]!.out + results[i]!.stderr, '');
      }
    });

    test('aliases: fetch, put/save/store, rm/remove (equal/equals, unique/ne/neq: above)', () => {
      ok(run(dir, ['kv', 'put', 'p', '1']));
      ok(run(dir, ['kv', 'save', 's', '1']));
      ok(run(dir, ['kv', 'store', 't', '2']));
      assert.equal(ok(run(dir, ['kv', 'fetch', 'p', 's', 't'])).out, '1\x001\x002');
      ok(run(dir, ['kv', 'rm', 'p']));
      ok(run(dir, ['kv', 'remove', 's']));
      assertOneLineError(run(dir, ['kv', 'get', 'p']), 3, '"p"');
      assertOneLineError(run(dir, ['kv', 'get', 's']), 3, '"s"');
    });

    test('-s/--store before and after the subcommand; -b/--backend before or after the command', {
      skip: mode.remote && FILE_ONLY,
    }, async () => {
      ok(run(dir, ['kv', '-s', 'other.db', 'set', 'where', 'other']));
      assert.ok(existsSync(join(dir, 'other.db')));
      assertOneLineError(run(dir, ['kv', 'get', 'where']), 3, '"where"');
      const lists = [
        ['kv', 'get', 'where', '-s', 'other.db'],
        ['kv', 'get', '--store', 'other.db', 'where'],
        ['kv', '--store=other.db', 'get', 'where'],
        // The innermost -s wins.
        ['kv', '-s', 'nowhere.db', 'get', 'where', '-s', 'other.db'],
        ['-b', 'sqlite', 'kv', 'get', 'where', '-s', 'other.db'],
        ['--backend', 'sqlite', 'kv', '-s', 'other.db', 'get', 'where'],
        ['kv', '-b', 'sqlite', '-s', 'other.db', 'get', 'where'],
        ['kv', '-s', 'other.db', 'get', 'where', '-b', 'sqlite'],
        ['kv', 'get', 'where', '--backend=sqlite', '--store', 'other.db'],
      ];
      const results = await runAll(dir, lists);
      for (const [i, args] of lists.entries()) assert.equal(ok(results[i]!).out, 'other', args.join(' '));
    });

    test('a store file that is not a database fails with status 4 naming the file', {
      skip: mode.remote && FILE_ONLY,
    }, () => {
      writeFileSync(join(dir, 'garbage.db'), 'this is not a database, just some text that is long enough '.repeat(20));
      assertOneLineError(
        run(dir, ['kv', 'get', 'k', '-s', 'garbage.db']),
        4,
        /^buffdb: cannot open the KV store garbage\.db: [^:]+$/,
      );
      assertOneLineError(run(dir, ['kv', 'set', 'k', 'v', '-s', 'garbage.db']), 4, 'garbage.db');
      assertOneLineError(run(dir, ['kv', 'get', 'k', '-s', '.']), 4, /cannot open the KV store \./);
    });
  });
}

export function blobCases(mode: Mode): void {
  describe(`buffdb blob (${mode.name})`, () => {
    let dir: string;
    const server = serveDir(mode, () => dir);
    before(async () => {
      dir = tempDir('buffdb-cli-blob-');
      await server.start();
    });
    after(async () => {
      await server.stop();
      rmSync(dir, { recursive: true, force: true });
    });

    const store = (args: string[], input?: Buffer | number): bigint => {
      const r = ok(run(dir, ['blob', 'store', ...args], input));
      assert.match(r.out, /^\d+\n$/);
      return BigInt(r.out.trim());
    };

    test('store FILE prints the new id; get writes exactly the stored bytes (NUL, 0xFF, no added newline)', () => {
      writeFileSync(join(dir, 'all.bin'), ALL_BYTES);
      const id = store(['all.bin']);
      assert.ok(existsSync(join(dir, 'blob_store.db')));
      assert.deepEqual(ok(run(dir, ['blob', 'get', String(id)])).stdout, ALL_BYTES);
      assert.deepEqual(ok(run(dir, ['blob', 'get', String(id), 'data'])).stdout, ALL_BYTES);
    });

    test('store - reads all of stdin as bytes, from a pipe and from a redirected file', () => {
      const bytes = Buffer.concat([Buffer.from([0, 0xff, 0, 0xfe, 0x0a, 0x0d]), ALL_BYTES, Buffer.from([0])]);
      const piped = store(['-'], bytes);
      assert.deepEqual(ok(run(dir, ['blob', 'get', String(piped)])).stdout, bytes);
      writeFileSync(join(dir, 'redirect.bin'), bytes);
      const fd = openSync(join(dir, 'redirect.bin'), 'r');
      try {
        const redirected = store(['-', 'from a file'], fd);
        assert.deepEqual(ok(run(dir, ['blob', 'get', String(redirected)])).stdout, bytes);
        assert.equal(ok(run(dir, ['blob', 'get', String(redirected), 'metadata'])).out, 'from a file');
      } finally {
        closeSync(fd);
      }
      const empty = store(['-'], Buffer.alloc(0));
      assert.equal(ok(run(dir, ['blob', 'get', String(empty)])).stdout.length, 0);
    });

    test('ids increase and are never reused', () => {
      const a = store(['-'], Buffer.from('a'));
      const b = store(['-'], Buffer.from('b'));
      assert.ok(b > a);
      ok(run(dir, ['blob', 'delete', String(b)]));
      assert.ok(store(['-'], Buffer.from('c')) > b);
    });

    test('metadata: get ID metadata / meta prints it; null prints nothing; all is metadata, NUL, data', async () => {
      const id = String(store(['-', 'image/png ✓'], Buffer.from([1, 0, 2])));
      const bare = String(store(['-'], Buffer.from('x')));
      const emptyMeta = String(store(['-', ''], Buffer.from('x')));
      const [meta, metaAlias, all, both, none, empty] = (
        await runAll(dir, [
          ['blob', 'get', id, 'metadata'],
          ['blob', 'get', id, 'meta'],
          ['blob', 'get', id, 'all'],
          ['blob', 'get', id, 'both'],
          ['blob', 'get', bare, 'metadata'],
          ['blob', 'get', emptyMeta, 'all'],
        ])
      ).map(ok);
      assert.equal(meta!.out, 'image/png ✓');
      assert.equal(metaAlias!.out, 'image/png ✓');
      assert.deepEqual(all!.stdout, Buffer.from('image/png ✓\0\x01\x00\x02', 'utf8'));
      assert.deepEqual(both!.stdout, Buffer.from('image/png ✓\0\x01\x00\x02', 'utf8'));
      assert.equal(none!.stdout.length, 0);
      assert.deepEqual(empty!.stdout, Buffer.from('\0x'));
    });

    test('update data / metadata / all, with the aliases meta and both', () => {
      const id = String(store(['-', 'first'], Buffer.from('one')));
      ok(run(dir, ['blob', 'update', id, 'data', '-'], Buffer.from([0xff, 0, 0xff])));
      assert.deepEqual(ok(run(dir, ['blob', 'get', id])).stdout, Buffer.from([0xff, 0, 0xff]));
      assert.equal(ok(run(dir, ['blob', 'get', id, 'metadata'])).out, 'first', 'data update keeps metadata');

      ok(run(dir, ['blob', 'update', id, 'metadata', 'second']));
      assert.equal(ok(run(dir, ['blob', 'get', id, 'metadata'])).out, 'second');
      assert.deepEqual(
        ok(run(dir, ['blob', 'get', id])).stdout,
        Buffer.from([0xff, 0, 0xff]),
        'metadata update keeps data',
      );
      ok(run(dir, ['blob', 'update', id, 'meta']));
      assert.equal(ok(run(dir, ['blob', 'get', id, 'metadata'])).stdout.length, 0, 'omitted metadata = null');

      writeFileSync(join(dir, 'new.bin'), 'new data\n');
      ok(run(dir, ['blob', 'update', id, 'all', 'new.bin', 'third']));
      assert.deepEqual(ok(run(dir, ['blob', 'get', id, 'all'])).stdout, Buffer.from('third\0new data\n'));
      ok(run(dir, ['blob', 'update', id, 'both', '-'], Buffer.from('piped')));
      assert.deepEqual(
        ok(run(dir, ['blob', 'get', id, 'all'])).stdout,
        Buffer.from('\0piped'),
        'all without METADATA sets null',
      );
    });

    test('missing ids exit 3 naming the id, except setting metadata to null', async () => {
      const cases: [string[], string][] = [
        [['blob', 'get', '987654'], 'blob id not found: 987654'],
        [['blob', 'get', '987654', 'metadata'], '987654'],
        [['blob', 'delete', '987654'], '987654'],
        [['blob', 'update', '987654', 'metadata', 'm'], '987654'],
        [['blob', 'eq-data', '987654'], '987654'],
        [['blob', 'not-eq-data', '987654'], '987654'],
        [['blob', 'get', '0'], 'blob id not found: 0'],
        [['blob', 'get', '18446744073709551615'], '18446744073709551615'],
      ];
      const results = await runAll(
        dir,
        cases.map(([args]) => args),
      );
      for (const [i, [, needle]] of cases.entries()) assertOneLineError(results[i]!, 3, needle);
      assertOneLineError(run(dir, ['blob', 'update', '987654', 'data', '-'], Buffer.from('x')), 3, '987654');
      assertOneLineError(run(dir, ['blob', 'update', '987654', 'all', '-', 'm'], Buffer.from('x')), 3, '987654');
      // The exception: metadata set to null needs no existing blob.
      const r = ok(run(dir, ['blob', 'update', '987654', 'metadata']));
      assert.equal(r.out + r.stderr, '');
      ok(run(dir, ['blob', 'update', '987654', 'meta']));
      assertOneLineError(run(dir, ['blob', 'get', '987654']), 3, '987654');
    });

    test('delete, and its aliases rm and remove', () => {
      for (const cmd of ['delete', 'rm', 'remove']) {
        const id = String(store(['-'], Buffer.from(cmd)));
        ok(run(dir, ['blob', cmd, id]));
        assertOneLineError(run(dir, ['blob', 'get', id]), 3, id);
        assertOneLineError(run(dir, ['blob', cmd, id]), 3, id);
      }
    });

    test('eq-data / not-eq-data compare data only, with their aliases', async () => {
      const a = String(store(['-', 'meta a'], Buffer.from([0, 1, 0xff])));
      const b = String(store(['-', 'meta b'], Buffer.from([0, 1, 0xff])));
      const c = String(store(['-', 'meta a'], Buffer.from([0, 1, 0xfe])));
      const cases: [string[], number][] = [
        ...['eq-data', 'equal', 'equals'].flatMap((cmd): [string[], number][] => [
          [[cmd, a, b], 0],
          [[cmd, a, b, c], 1],
        ]),
        ...['not-eq-data', 'unique', 'ne', 'neq'].flatMap((cmd): [string[], number][] => [
          [[cmd, a, c], 0],
          [[cmd, a, c, b], 1],
        ]),
      ];
      const results = await runAll(
        dir,
        cases.map(([args]) => ['blob', ...args]),
      );
      for (const [i, [args, status]] of cases.entries()) {
        assert.equal(results[i]!.status, status, `${args.join(' ')}: ${results[i]!.stderr}`);
      }
    });

    test('aliases fetch, put, save and set', () => {
      for (const cmd of ['put', 'save', 'set']) {
        const r = ok(run(dir, ['blob', cmd, '-', cmd], Buffer.from(`via ${cmd}`)));
        const id = r.out.trim();
        assert.equal(ok(run(dir, ['blob', 'fetch', id])).out, `via ${cmd}`);
        assert.equal(ok(run(dir, ['blob', 'fetch', id, 'metadata'])).out, cmd);
      }
    });

    test('-s before and after the subcommand, -b before or after the command', {
      skip: mode.remote && FILE_ONLY,
    }, async () => {
      const id = ok(run(dir, ['blob', '-s', 'b2.db', 'store', '-'], Buffer.from('elsewhere'))).out.trim();
      assert.ok(existsSync(join(dir, 'b2.db')));
      const lists = [
        ['blob', 'get', id, '-s', 'b2.db'],
        ['-b', 'sqlite', 'blob', '--store', 'b2.db', 'get', id],
        ['blob', '-b', 'sqlite', 'get', id, '-s', 'b2.db'],
        ['blob', 'get', id, '--backend', 'sqlite', '--store=b2.db'],
      ];
      const results = await runAll(dir, lists);
      for (const [i, args] of lists.entries()) assert.equal(ok(results[i]!).out, 'elsewhere', args.join(' '));
    });

    test('unreadable input and bad store files exit 4 with one line', { skip: mode.remote && FILE_ONLY }, () => {
      assertOneLineError(
        run(dir, ['blob', 'store', 'no-such-file.bin']),
        4,
        'cannot read no-such-file.bin: no such file',
      );
      assertOneLineError(run(dir, ['blob', 'store', '.']), 4, 'cannot read .: is a directory');
      const id = String(store(['-'], Buffer.from('keep')));
      assertOneLineError(run(dir, ['blob', 'update', id, 'data', 'no-such-file.bin']), 4, 'no-such-file.bin');
      assert.equal(ok(run(dir, ['blob', 'get', id])).out, 'keep', 'a failed update changes nothing');
      writeFileSync(join(dir, 'garbage.db'), Buffer.alloc(8192, 0x41));
      assertOneLineError(
        run(dir, ['blob', 'get', '1', '-s', 'garbage.db']),
        4,
        /^buffdb: cannot open the BLOB store garbage\.db: [^:]+$/,
      );
    });

    test('a reader that stops early (| head -c 1) gets its byte and no error message', () => {
      const id = String(store(['-'], Buffer.alloc(8 * 1024 * 1024, 7)));
      const r = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" blob get ${id} | head -c 1`], {
        cwd: dir,
        env: cliEnv,
      });
      assert.equal(r.status, 0);
      assert.deepEqual(r.stdout, Buffer.from([7]));
      assert.equal(r.stderr.toString(), '');
    });

    test('get --range OFFSET:LENGTH: those bytes, clamped to the blob; OFFSET: to the end; bad ranges fail', async () => {
      const id = String(store(['-', 'ranged'], ALL_BYTES));
      const [part, open, bare, clamped, atEnd, withAll, past, bad, metaRange] = await runAll(dir, [
        ['blob', 'get', id, '--range', '10:5'],
        ['blob', 'get', id, '--range', '250:'],
        ['blob', 'get', id, '--range', '254'],
        ['blob', 'get', id, '--range', '200:1000'],
        ['blob', 'get', id, '--range', '256:'],
        ['blob', 'get', id, 'all', '--range', '0:2'],
        ['blob', 'get', id, '--range', '257:1'],
        ['blob', 'get', id, '--range', '1:-2'],
        ['blob', 'get', id, 'metadata', '--range', '0:1'],
      ]);
      assert.deepEqual(ok(part!).stdout, ALL_BYTES.subarray(10, 15));
      assert.deepEqual(ok(open!).stdout, ALL_BYTES.subarray(250));
      assert.deepEqual(ok(bare!).stdout, ALL_BYTES.subarray(254));
      assert.deepEqual(ok(clamped!).stdout, ALL_BYTES.subarray(200));
      assert.equal(ok(atEnd!).stdout.length, 0);
      assert.deepEqual(ok(withAll!).stdout, Buffer.from('ranged\0\x00\x01', 'latin1'));
      assertOneLineError(past!, 4, 'offset 257 is past the end of blob');
      assert.equal(past!.stdout.length, 0);
      assertOneLineError(bad!, 2, 'OFFSET:LENGTH');
      assertOneLineError(metaRange!, 2, '--range');
      assertOneLineError(run(dir, ['blob', 'get', '999999', '--range', '0:1']), 3, '999999');
    });

    test('a 100 MiB blob round-trips through a pipe and a file; no progress output when stderr is not a terminal', () => {
      const big = Buffer.allocUnsafe(100 * 1024 * 1024);
      for (let i = 0; i < big.length; i += 4096) big.writeUInt32LE((i ^ 0xdeadbeef) >>> 0, i);
      big[big.length - 1] = 0;
      const viaPipe = run(dir, ['blob', 'store', '-'], big);
      assert.equal(viaPipe.status, 0, viaPipe.stderr);
      assert.equal(viaPipe.stderr, '');
      writeFileSync(join(dir, 'big.bin'), big);
      const viaFile = ok(run(dir, ['blob', 'store', 'big.bin']));
      assert.equal(viaFile.stderr, '');
      for (const id of [viaPipe.out.trim(), viaFile.out.trim()]) {
        const got = run(dir, ['blob', 'get', id]);
        assert.equal(got.status, 0);
        assert.equal(got.stderr, '');
        assert.ok(got.stdout.equals(big), 'the bytes come back exactly');
      }
    });

    test('progress goes to stderr when it is a terminal (large blobs only)', () => {
      writeFileSync(join(dir, 'medium.bin'), Buffer.alloc(24 * 1024 * 1024, 1));
      // `script` gives the command a pseudo-terminal; stdout is redirected to a file inside it.
      const cmd = `"${process.execPath}" "${CLI}" blob store medium.bin > id.txt`;
      const r = spawnSync('script', ['-qec', cmd, '/dev/null'], { cwd: dir, env: cliEnv });
      assert.equal(r.status, 0, r.stderr.toString());
      assert.match(r.stdout.toString(), /reading medium\.bin .*24\.0 MiB \/ 24\.0 MiB \(100%\)/);
      const id = readFileSync(join(dir, 'id.txt'), 'utf8').trim();
      assert.match(id, /^\d+$/);
      assert.equal(ok(run(dir, ['blob', 'get', id])).stdout.length, 24 * 1024 * 1024);
    });

    test('on a terminal, kv get and blob get ID metadata end with a newline (and only there)', () => {
      ok(run(dir, ['kv', 'set', 'tty', 'on a terminal']));
      const id = ok(run(dir, ['blob', 'store', '-', 'meta on a terminal'], Buffer.from('x'))).out.trim();
      const tty = (args: string) =>
        spawnSync('script', ['-qec', `"${process.execPath}" "${CLI}" ${args}`, '/dev/null'], { cwd: dir, env: cliEnv });
      assert.equal(tty('kv get tty').stdout.toString(), 'on a terminal\r\n');
      assert.equal(tty(`blob get ${id} metadata`).stdout.toString(), 'meta on a terminal\r\n');
      assert.equal(ok(run(dir, ['kv', 'get', 'tty'])).out, 'on a terminal');
    });
  });
}
