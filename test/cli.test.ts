/**
 * The buffdb command line, run as users run it: the built dist/cli/main.js as a child process, in a
 * temp directory, on real store files. The kv and blob cases live in cli/cases.ts: they run here on
 * store files and in cli-remote.test.ts against a server.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type BackendName, capabilitiesOf } from '../src/backends/index.js';
import { ALL_BYTES, assertOneLineError, blobCases, kvCases, MODES, ok, run, runAll } from './cli/cases.js';
import { storeLocator } from './helpers/postgres.js';
import { bidi, CLI, ROOT, startTestServer, TEST_BACKENDS, tempDir } from './helpers/server.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };

describe('buffdb CLI: help, version, usage errors', () => {
  let dir: string;
  before(() => {
    dir = tempDir('buffdb-cli-');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  test('--version and -V print the package version', () => {
    assert.equal(ok(run(dir, ['--version'])).out, `${pkg.version}\n`);
    assert.equal(ok(run(dir, ['-V'])).out, `${pkg.version}\n`);
  });

  test('help, --help and help COMMAND list commands, defaults and the exit statuses', async () => {
    const lists = [['help'], ['--help'], ['-h']];
    const results = await runAll(dir, lists);
    for (const [i, args] of lists.entries()) {
      const r = ok(results[i]!);
      for (const word of [
        'run|serve',
        'kv',
        'blob',
        '--backend',
        'default: "sqlite"',
        'Exit status',
        '  3  a key or blob id',
      ]) {
        assert.ok(r.out.includes(word), `${args.join(' ')} shows ${word}`);
      }
    }
    assert.match(ok(run(dir, ['help', 'kv'])).out, /get\|fetch/);
    assert.match(ok(run(dir, ['kv', 'help', 'get'])).out, /Usage: buffdb kv get\|fetch/);
    assert.match(ok(run(dir, ['blob', 'help', 'update'])).out, /Usage: buffdb blob update/);
  });

  test('--help on every command shows its defaults and an example', async () => {
    const commands: [string[], string][] = [
      [['run'], '[::1]:50051'],
      [['kv'], 'kv_store.db'],
      [['kv', 'get'], 'kv_store.db'],
      [['kv', 'set'], 'kv_store.db'],
      [['kv', 'delete'], 'kv_store.db'],
      [['kv', 'eq'], 'kv_store.db'],
      [['kv', 'not-eq'], 'kv_store.db'],
      [['blob'], 'blob_store.db'],
      [['blob', 'get'], 'blob_store.db'],
      [['blob', 'store'], 'blob_store.db'],
      [['blob', 'update'], 'blob_store.db'],
      [['blob', 'delete'], 'blob_store.db'],
      [['blob', 'eq-data'], 'blob_store.db'],
      [['blob', 'not-eq-data'], 'blob_store.db'],
    ];
    const results = await runAll(
      dir,
      commands.map(([cmd]) => [...cmd, '--help']),
    );
    for (const [i, [cmd, def]] of commands.entries()) {
      const r = ok(results[i]!);
      assert.ok(r.out.includes(def), `${cmd.join(' ')} --help shows default ${def}`);
      assert.match(r.out, /Examples?:\n {2}\S/, `${cmd.join(' ')} --help has an example`);
      assert.match(r.out, /sqlite/, `${cmd.join(' ')} --help names the default backend`);
    }
    assert.ok(results[0]!.out.includes('blob_store.db'));
  });

  test('usage errors exit 2 with one line naming the problem', async () => {
    const cases: [string[], string | RegExp][] = [
      [[], 'missing command'],
      [['frobnicate'], "unknown command 'frobnicate'"],
      [['kv'], 'missing command: use one of get, set, delete, eq, not-eq'],
      [['blob'], 'missing command'],
      [['kv', 'gett', 'x'], "unknown command 'gett'"],
      [['kv', 'get'], "missing required argument 'KEY'"],
      [['kv', 'set', 'k'], "missing required argument 'VALUE'"],
      [['kv', 'set', 'k', 'v', 'extra'], 'too many arguments'],
      [['kv', 'delete'], "missing required argument 'KEY'"],
      [['kv', 'eq'], "missing required argument 'KEY'"],
      [['kv', 'get', 'k', '--frob'], "unknown option '--frob'"],
      [['kv', '-s'], "option '-s, --store <PATH>' argument missing"],
      [['-b', 'nope', 'kv', 'get', 'k'], /argument 'nope' is invalid.*sqlite/],
      [['kv', '-b', 'nope', 'get', 'k'], /argument 'nope' is invalid/],
      [['kv', 'get', 'k', '--backend', 'nope'], /argument 'nope' is invalid/],
      [['blob', 'get', 'abc'], /'abc' is invalid.*whole number/],
      [['blob', 'get', '-1'], /'-1' is invalid/],
      [['blob', 'get', '1.5'], /'1.5' is invalid/],
      [['blob', 'get', '18446744073709551616'], /at most 18446744073709551615/],
      [['blob', 'get', '1', 'sideways'], /'sideways' is invalid.*data, metadata/],
      [['blob', 'delete', 'x'], /'x' is invalid/],
      [['blob', 'eq-data', '1', 'two'], /'two' is invalid/],
      [['blob', 'store'], "missing required argument 'FILE'"],
      [['blob', 'update', '1'], "missing required argument 'PART'"],
      [['blob', 'update', '1', 'colour', 'x'], /'colour' is invalid/],
      [['blob', 'update', '1', 'data'], 'missing FILE'],
      [['blob', 'update', '1', 'all'], 'missing FILE'],
      [['blob', 'update', '1', 'data', 'f', 'meta'], 'too many arguments'],
      [['blob', 'update', '1', 'metadata', 'a', 'b'], 'too many arguments'],
      [['run', '--durability', 'sometimes'], /argument 'sometimes' is invalid/],
    ];
    const results = await runAll(
      dir,
      cases.map(([args]) => args),
    );
    for (const [i, [, needle]] of cases.entries()) assertOneLineError(results[i]!, 2, needle);
    // Nothing was created by commands that never ran.
    assert.equal(existsSync(join(dir, 'kv_store.db')), false);
    assert.equal(existsSync(join(dir, 'blob_store.db')), false);
  });
});

kvCases(MODES[0]!);
blobCases(MODES[0]!);

describe('the CLI and the gRPC server share the store and its rules', () => {
  test('values written by the CLI are read identically over gRPC, and the other way round', async () => {
    const dir = tempDir('buffdb-cli-grpc-');
    try {
      const value = 'shared ✓ and 𝄞';
      const blobBytes = Buffer.concat([ALL_BYTES, Buffer.from(ALL_BYTES).reverse()]);
      writeFileSync(join(dir, 'in.bin'), blobBytes);
      ok(run(dir, ['kv', 'set', 'from-cli', value]));
      const id = ok(run(dir, ['blob', 'store', 'in.bin', 'cli meta'])).out.trim();

      const server = await startTestServer({ dir });
      try {
        const got = await bidi(server.clients.kv.get(), [{ key: 'from-cli' }]);
        assert.equal(got.err, undefined);
        assert.equal(got.out[0]!.value, value);
        const blob = await bidi(server.clients.blob.get(), [{ id: BigInt(id) }]);
        assert.equal(blob.err, undefined);
        assert.deepEqual(Buffer.from(blob.out[0]!.bytes), blobBytes);
        assert.equal(blob.out[0]!.metadata, 'cli meta');
        const missing = await bidi(server.clients.kv.get(), [{ key: 'from-grpc' }]);
        assert.match(missing.err!.details, /key not found: "from-grpc"/);
        await bidi(server.clients.kv.set(), [{ key: 'from-grpc', value: 'written over gRPC 🦁' }]);
      } finally {
        await server.stop();
      }
      assert.equal(ok(run(dir, ['kv', 'get', 'from-grpc'])).out, 'written over gRPC 🦁');
      // Same rule, same words: the CLI's not-found line carries the store's message.
      assertOneLineError(run(dir, ['kv', 'get', 'from-nowhere']), 3, 'key not found: "from-nowhere"');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('the CLI on every backend under test', () => {
  for (const backend of TEST_BACKENDS) {
    test(`${backend}: kv and blob round-trips with -b ${backend}`, async () => {
      const dir = tempDir(`buffdb-cli-${backend}-`);
      // File backends use the default file names; a database backend gets a URL (-s) per store.
      const stores = await storeLocator(backend);
      const urls = capabilitiesOf(backend as BackendName).storeLocation === 'url';
      const kv = urls ? ['-s', stores.locate('cli').kvStore] : [];
      const blob = urls ? ['-s', stores.locate('cli').blobStore] : [];
      try {
        ok(run(dir, ['-b', backend, 'kv', 'set', 'ключ', 'значение 🦁', ...kv]));
        assert.equal(ok(run(dir, ['kv', 'get', 'ключ', '-b', backend, ...kv])).out, 'значение 🦁');
        assertOneLineError(run(dir, ['kv', 'get', 'missing', '-b', backend, ...kv]), 3, '"missing"');
        const id = ok(run(dir, ['blob', '-b', backend, 'store', '-', 'm', ...blob], ALL_BYTES)).out.trim();
        assert.deepEqual(ok(run(dir, ['blob', 'get', id, '--backend', backend, ...blob])).stdout, ALL_BYTES);
        ok(run(dir, ['blob', 'update', id, 'metadata', '-b', backend, ...blob]));
        assert.equal(ok(run(dir, ['blob', 'get', id, 'metadata', '-b', backend, ...blob])).stdout.length, 0);
      } finally {
        await stores.dispose();
        rmSync(dir, { recursive: true, force: true });
      }
    });
  }

  test('kv get loads neither gRPC nor another storage engine', () => {
    const dir = tempDir('buffdb-cli-loads-');
    try {
      ok(run(dir, ['kv', 'set', 'k', 'v']));
      // NODE_DEBUG=module logs every CommonJS load: the engines and grpc-js are all CommonJS.
      const r = spawnSync(process.execPath, [CLI, 'kv', 'get', 'k'], {
        cwd: dir,
        env: { ...process.env, NODE_DEBUG: 'module' },
      });
      assert.equal(r.status, 0);
      const log = r.stderr.toString();
      assert.match(log, /better-sqlite3/, 'the log shows what loads');
      for (const heavy of ['@grpc', 'duckdb', 'rocksdb', 'lmdb', 'protobuf']) {
        assert.ok(!log.includes(heavy), `kv get must not load ${heavy}`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
