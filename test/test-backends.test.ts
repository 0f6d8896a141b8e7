/** BUFFDB_TEST_BACKENDS: which backends the backend-parameterised suites run on; a bad value fails loudly. */

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { BACKEND_NAMES } from '../src/backends/index.js';
import { parseTestBackends, ROOT } from './helpers/server.js';

describe('BUFFDB_TEST_BACKENDS', () => {
  it('unset: every backend', () => {
    assert.deepEqual(parseTestBackends(undefined), [...BACKEND_NAMES]);
  });

  it('a list: exactly those backends, spaces ignored', () => {
    assert.deepEqual(parseTestBackends('sqlite, lmdb'), ['sqlite', 'lmdb']);
  });

  it('set but naming no backend is an error listing the choices', () => {
    for (const value of ['', ',', ' , ']) {
      assert.throws(() => parseTestBackends(value), /BUFFDB_TEST_BACKENDS is set but names no backend.*sqlite, duckdb/);
    }
  });

  it('an unknown backend is an error naming it', () => {
    assert.throws(() => parseTestBackends('sqlite,mysql'), /unknown backend "mysql".*sqlite, duckdb/);
  });

  it('a suite run with it set but empty fails instead of passing with no tests', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, BUFFDB_TEST_BACKENDS: '' };
    // Run as a top-level test run, not as a child reporting to this one.
    delete env.NODE_TEST_CONTEXT;
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--test', 'test/kv.test.ts'], {
      cwd: ROOT,
      env,
      encoding: 'utf8',
      timeout: 60_000,
    });
    assert.notEqual(r.status, 0, r.stdout);
    assert.match(r.stdout + r.stderr, /BUFFDB_TEST_BACKENDS is set but names no backend/);
  });
});
