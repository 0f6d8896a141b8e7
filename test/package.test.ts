/**
 * The npm package as a user gets it: `npm pack`, install the tarball into an empty folder (native
 * dependencies build there, about a minute or two), then the `buffdb` command and
 * `import ... from 'buffdb'`, run from that folder.
 */

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { ROOT, tempDir } from './helpers/server.js';

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion without blocking the event loop (so test timeouts still fire). */
function run(cmd: string, args: string[], cwd: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    // Without the runner's NODE_TEST_CONTEXT, a nested `node --test` reports TAP on stdout, not to us.
    const { NODE_TEST_CONTEXT: _, ...env } = process.env;
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function ok(r: Ran, what: string): Ran {
  assert.equal(r.code, 0, `${what} failed:\n${r.stderr}`);
  return r;
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as {
  version: string;
  allowScripts: Record<string, boolean>;
};

/**
 * The allowScripts a consumer needs: every package with an install script in buffdb's runtime
 * dependency tree (from the lockfile), with the decision buffdb's own package.json takes for it.
 */
function consumerAllowScripts(): Record<string, boolean> {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { dev?: boolean; hasInstallScript?: boolean }>;
  };
  const allow: Record<string, boolean> = {};
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (!entry.hasInstallScript || entry.dev) continue;
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    const decision = pkg.allowScripts[name];
    assert.equal(typeof decision, 'boolean', `package.json allowScripts has no entry for ${name}`);
    allow[name] = decision!;
  }
  return allow;
}

/** The package's own `buffdb` bin; `--no`: never fetch one from the registry instead. */
const NPX = ['--no', '--', 'buffdb'];

describe('the npm package, installed from its tarball into an empty folder', () => {
  let dir: string;
  let consumer: string;
  let packed: { filename: string; files: { path: string }[] };
  let install: Ran;

  before(
    async () => {
      dir = tempDir('buffdb-package-');
      // `npm pack` runs `prepare` (the build) first, as publishing does.
      const pack = ok(await run('npm', ['pack', '--json', '--pack-destination', dir], ROOT), 'npm pack');
      packed = (JSON.parse(pack.stdout) as (typeof packed)[])[0]!;
      consumer = join(dir, 'consumer');
      // An absolute file: spec: npm matches allowScripts keys for file dependencies on it.
      const tarball = `file:${join(dir, packed.filename)}`;
      mkdirSync(consumer);
      writeFileSync(
        join(consumer, 'package.json'),
        JSON.stringify({
          name: 'buffdb-consumer',
          version: '1.0.0',
          private: true,
          type: 'module',
          // buffdb's own `prepare` (its build) is listed for a tarball install although npm runs it
          // only for git and linked installs: deny it, as a registry install never lists it.
          allowScripts: { ...consumerAllowScripts(), [tarball]: false },
          dependencies: { buffdb: tarball },
        }),
      );
      install = ok(
        await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund'], consumer),
        'npm install',
      );
    },
    { timeout: 15 * 60_000 },
  );
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('the tarball holds dist, proto, README, licences and changelog; no tests, benches, scripts or sources', () => {
    const files = packed.files.map((f) => f.path);
    for (const needed of [
      'package.json',
      'README.md',
      'LICENSE-MIT',
      'LICENSE-APACHE',
      'CHANGELOG.md',
      'proto/kv.proto',
      'proto/blob.proto',
      'proto/query.proto',
      'proto/admin.proto',
      'proto/etcd/etcdserverpb/rpc.proto',
      'proto/etcd/mvccpb/kv.proto',
      'proto/etcd/authpb/auth.proto',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
    ]) {
      assert.ok(files.includes(needed), `${needed} is missing from the package`);
    }
    const extra = files.filter(
      (f) =>
        !/^(package\.json|README\.md|LICENSE-MIT|LICENSE-APACHE|CHANGELOG\.md)$/.test(f) &&
        !/^proto\/(etcd\/(authpb|etcdserverpb|mvccpb)\/)?[^/]+\.proto$/.test(f) &&
        !/^dist\//.test(f),
    );
    assert.deepEqual(extra, [], 'files a user does not need');
    assert.deepEqual(
      files.filter((f) => /^dist\/(src|test|bench|scripts)\//.test(f) || /\.test\./.test(f)),
      [],
      'build output of tests, benches or scripts',
    );
  });

  it('installs without install-script warnings', () => {
    assert.doesNotMatch(install.stderr, /install-scripts|allow-scripts/, install.stderr);
  });

  it('npx buffdb --version prints the version', async () => {
    const r = ok(await run('npx', [...NPX, '--version'], consumer), 'npx buffdb --version');
    assert.equal(r.stdout, `${pkg.version}\n`);
  });

  it('npx buffdb kv set, then kv get, on a store file', async () => {
    const store = join(dir, 'cli-kv.db');
    const set = ok(await run('npx', [...NPX, 'kv', 'set', 'k', 'v', '--store', store], consumer), 'kv set');
    assert.equal(set.stdout, '');
    const got = ok(await run('npx', [...NPX, 'kv', 'get', 'k', '--store', store], consumer), 'kv get');
    assert.equal(got.stdout, 'v');
  });

  it("import { BuffDb } from 'buffdb' opens a store and round-trips a value and a blob", async () => {
    const script = `
      import { BuffDb } from 'buffdb';
      const db = await BuffDb.open({ kvStore: ${JSON.stringify(join(dir, 'lib-kv.db'))}, blobStore: ${JSON.stringify(join(dir, 'lib-blob.db'))} });
      await db.kv.setValue('library', 'works');
      const value = await db.kv.getValue('library');
      const id = await db.blob.storeBlob(Buffer.from('bytes'), 'meta');
      const blob = await db.blob.getBlob(id);
      await db.close();
      console.log(JSON.stringify([value, Buffer.from(blob.data).toString(), blob.metadata]));
    `;
    const r = ok(await run(process.execPath, ['--input-type=module', '-e', script], consumer), 'the import');
    assert.deepEqual(JSON.parse(r.stdout), ['works', 'bytes', 'meta']);
  });

  it("a backend's author runs the shared suite from 'buffdb/conformance' (here on sqlite)", async () => {
    const file = join(consumer, 'conformance.test.mjs');
    writeFileSync(file, "import { conformance } from 'buffdb/conformance';\nconformance('sqlite');\n");
    const r = await run(process.execPath, ['--test', '--test-reporter=tap', file], consumer);
    assert.equal(r.code, 0, `the suite failed:\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`);
    const count = (name: string): number => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(r.stdout)?.[1]);
    assert.ok(count('pass') >= 50, `tests passed: ${count('pass')}`);
    assert.equal(count('fail'), 0);
  });
});
