/**
 * `buffdb run` settings from flags, environment variables (BUFFDB_…) and a TOML config file, with
 * precedence flag > env > file > default, on real server processes.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CLI, spawnServer, tempDir } from './helpers/server.js';

const CONFIG = `# buffdb run settings
addr = "127.0.0.1:0"
kv-store = "file-kv.db"
blob-store = "file-blob.db"
log-level = "warn"
transaction-timeout = 5000
`;

/** Starts `buffdb run ARGS`, checks which KV store file it made, and stops it. */
async function storeChosen(dir: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ stderr: string }> {
  const srv = await spawnServer(args, dir, env);
  srv.child.kill('SIGTERM');
  const exit = await srv.exited;
  assert.deepEqual(exit, { code: 0, signal: null }, srv.stderr());
  return { stderr: srv.stderr() };
}

function runCli(cwd: string, args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [CLI, 'run', ...args], {
    cwd,
    env: { ...process.env, ...env },
    timeout: 30_000,
  });
  return { status: r.status, stdout: r.stdout.toString(), stderr: r.stderr.toString() };
}

describe('run settings: flag > environment > config file > default', () => {
  let dir: string;
  before(() => {
    dir = tempDir('buffdb-config-');
    writeFileSync(join(dir, 'buffdb.toml'), CONFIG);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const fresh = (): string => {
    for (const f of ['file', 'env', 'flag']) {
      rmSync(join(dir, `${f}-kv.db`), { force: true });
      rmSync(join(dir, `${f}-blob.db`), { force: true });
    }
    return dir;
  };

  test('the config file alone: its addr, stores and log level are used', async () => {
    const { stderr } = await storeChosen(fresh(), ['--config', 'buffdb.toml'], {});
    assert.ok(existsSync(join(dir, 'file-kv.db')));
    assert.ok(existsSync(join(dir, 'file-blob.db')));
    assert.doesNotMatch(stderr, /listening on/, 'log-level warn from the file hides info lines');
  });

  test('BUFFDB_CONFIG names the file; the environment beats it', async () => {
    await storeChosen(fresh(), [], {
      BUFFDB_CONFIG: 'buffdb.toml',
      BUFFDB_KV_STORE: 'env-kv.db',
      BUFFDB_LOG_LEVEL: 'info',
    });
    assert.ok(existsSync(join(dir, 'env-kv.db')));
    assert.ok(!existsSync(join(dir, 'file-kv.db')));
    assert.ok(existsSync(join(dir, 'file-blob.db')), 'what the environment does not set still comes from the file');
  });

  test('a flag beats the environment, and a positional ADDR beats BUFFDB_ADDR', async () => {
    await storeChosen(fresh(), ['127.0.0.1:0', '--config', 'buffdb.toml', '--kv-store', 'flag-kv.db'], {
      BUFFDB_KV_STORE: 'env-kv.db',
      BUFFDB_ADDR: '127.0.0.1:not-a-port',
    });
    assert.ok(existsSync(join(dir, 'flag-kv.db')));
    assert.ok(!existsSync(join(dir, 'env-kv.db')));
    const r = runCli(fresh(), ['--config', 'buffdb.toml'], { BUFFDB_ADDR: '127.0.0.1:not-a-port' });
    assert.equal(r.status, 4, r.stderr);
    assert.match(r.stderr, /cannot listen on 127\.0\.0\.1:not-a-port/);
  });

  /** A setting as the server logged it in its "listening on" line. */
  const logged = async (field: string, args: string[], env: NodeJS.ProcessEnv): Promise<unknown> => {
    const { stderr } = await storeChosen(fresh(), ['--config', 'buffdb.toml', ...args], {
      BUFFDB_LOG_LEVEL: 'info',
      ...env,
    });
    const line = stderr.split('\n').find((l) => l.includes('listening on'));
    assert.ok(line, stderr);
    return JSON.parse(line)[field];
  };

  test('--heap-growth reaches the server: 50 by default, the environment and the flag change it', async () => {
    assert.equal(await logged('heapGrowthPercent', [], {}), 50);
    assert.equal(await logged('heapGrowthPercent', [], { BUFFDB_HEAP_GROWTH: '0' }), 0);
    assert.equal(await logged('heapGrowthPercent', ['--heap-growth', '25'], { BUFFDB_HEAP_GROWTH: '0' }), 25);
  });

  test('--young-heap reaches the server: 16 by default, the environment and the flag change it', async () => {
    assert.equal(await logged('youngHeapMiB', [], {}), 16);
    assert.equal(await logged('youngHeapMiB', [], { BUFFDB_YOUNG_HEAP: '0' }), 0);
    assert.equal(await logged('youngHeapMiB', ['--young-heap', '8'], { BUFFDB_YOUNG_HEAP: '0' }), 8);
  });

  test('booleans from the environment: BUFFDB_READ_ONLY=false is false', async () => {
    await storeChosen(fresh(), ['--config', 'buffdb.toml'], { BUFFDB_READ_ONLY: 'false' });
    assert.ok(existsSync(join(dir, 'file-kv.db')), 'not read-only: the store was created');
  });

  test('errors name the key, variable or file: unknown key, bad value, missing file', () => {
    writeFileSync(join(dir, 'unknown.toml'), 'addr = "127.0.0.1:0"\nmetrics-adr = "x"\n');
    writeFileSync(join(dir, 'bad-value.toml'), 'durability = "sometimes"\n');
    writeFileSync(join(dir, 'bad-type.toml'), 'read-only = "perhaps"\n');
    writeFileSync(join(dir, 'not-toml.toml'), 'addr = \n');
    const cases: [string[], NodeJS.ProcessEnv, number, RegExp][] = [
      [['--config', 'unknown.toml'], {}, 2, /unknown key "metrics-adr" in the config file unknown\.toml/],
      [['--config', 'bad-value.toml'], {}, 2, /durability in bad-value\.toml: "sometimes" is not one of full, normal/],
      [['--config', 'bad-type.toml'], {}, 2, /read-only in bad-type\.toml: expected true or false/],
      [['--config', 'not-toml.toml'], {}, 2, /config file not-toml\.toml is not valid TOML/],
      [['--config', 'missing.toml'], {}, 4, /cannot read the config file missing\.toml: no such file/],
      [[], { BUFFDB_CONFIG: 'missing.toml' }, 4, /missing\.toml/],
      [[], { BUFFDB_DURABILITY: 'sometimes' }, 2, /environment variable BUFFDB_DURABILITY/],
      [[], { BUFFDB_MAX_MESSAGE_SIZE: 'lots' }, 2, /BUFFDB_MAX_MESSAGE_SIZE: expected a size/],
      [['--heap-growth', '1001'], {}, 2, /--heap-growth.*expected a whole percent from 0 to 1000/],
      [[], { BUFFDB_HEAP_GROWTH: '-5' }, 2, /BUFFDB_HEAP_GROWTH: expected a whole percent/],
      [['--young-heap', '2048'], {}, 2, /--young-heap.*expected whole MiB from 0 to 1024/],
      [[], { BUFFDB_YOUNG_HEAP: 'lots' }, 2, /BUFFDB_YOUNG_HEAP: expected whole MiB/],
    ];
    for (const [args, env, code, message] of cases) {
      const r = runCli(dir, args, env);
      assert.equal(r.status, code, `${args.join(' ')} ${JSON.stringify(env)}: ${r.stderr}`);
      assert.match(r.stderr, /^buffdb: [^\n]+\n$/);
      assert.match(r.stderr, message);
    }
  });
});
