/**
 * DuckDB on `@duckdb/node-api`: one database file per store, a writer connection that runs each
 * buffdb batch as one transaction, and reader connections for read-only raw SQL (./sql.ts).
 * Schema: ./schema.ts; deferred writes: ./pending-table.ts; the store operations: ./store-ops.ts.
 *
 * Sandbox: the instance is created with file-system access and extension loading switched off
 * (`enable_external_access=false`, no autoload/autoinstall), and the configuration is locked once
 * the schema exists, so raw SQL cannot switch them back. assertSqlAllowed refuses the rest.
 */

import { existsSync, statSync, unlinkSync } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';
import { failedPrecondition } from '../../errors.js';
import type { BlobEngineOps, KvEngineOps, OpenOptions, StoreEngine } from '../backend.js';
import { readFileHead } from '../file-head.js';
import type { BackendImpl } from '../index.js';
import { withSnapshots } from '../snapshot.js';
import { checkFilePath, writable } from '../store-path.js';
import { mapDuckDbError } from './errors.js';
import { blobSchema, kvSchema, objectType } from './schema.js';
import { duckdbSnapshot } from './snapshot.js';
import { DuckSql } from './sql.js';
import { blobEngineOps, kvEngineOps, type Tables } from './store-ops.js';
import { Writer } from './writer.js';

class DuckEngine<Ops> implements StoreEngine<Ops> {
  readonly sql: DuckSql;

  constructor(
    private readonly instance: DuckDBInstance,
    private readonly writer: Writer,
    private readonly ops: Ops,
    private readonly tables: Tables,
    kvStore: boolean,
    readOnly: boolean,
  ) {
    this.sql = new DuckSql(instance, writer, () => this.flush(), kvStore, readOnly);
  }

  mapError = mapDuckDbError;

  private async flush(): Promise<void> {
    for (const t of this.tables) await t.flush();
  }

  async batch<T>(work: (ops: Ops) => Promise<T>): Promise<T> {
    // DuckDB writes and syncs its WAL at COMMIT; there is no weaker per-commit setting.
    this.writer.begin();
    let result: T;
    try {
      result = await work(this.ops);
      await this.flush();
      await this.writer.end(true);
    } catch (err) {
      for (const t of this.tables) t.onRollback();
      // After an error DuckDB keeps the transaction open but aborted; ROLLBACK ends it either way.
      await this.writer.end(false).catch(() => {});
      throw err;
    }
    for (const t of this.tables) t.onCommit();
    return result;
  }

  close(): void {
    this.sql.close();
    for (const t of this.tables) t.close();
    this.writer.close();
    this.instance.closeSync();
  }
}

/** DuckDB files carry "DUCK" at byte 8. */
function isDuckDbFile(path: string): boolean {
  return readFileHead(path, 12).subarray(8, 12).toString('latin1') === 'DUCK';
}

/** What an existing file at `path` means: a fresh store (empty) or a refusal (someone else's file). */
function checkExistingFile(path: string, readOnly: boolean): void {
  if (path === ':memory:') return;
  if (readOnly && !existsSync(path)) throw failedPrecondition(`${path} does not exist`);
  const st = statSync(path, { throwIfNoEntry: false });
  if (st?.isFile() && st.size === 0) {
    // An empty file is a fresh store (as on the other backends); DuckDB itself refuses it.
    if (!readOnly && !existsSync(`${path}.wal`)) unlinkSync(path);
  } else if (st?.isFile() && !isDuckDbFile(path)) {
    // Without this DuckDB tries to read a SQLite file through an extension and says so, obscurely.
    throw failedPrecondition(
      'file is not a duckdb store (made by another backend, or damaged); choose the backend it was made with',
    );
  }
}

async function openDuck<Ops>(path: string, options: OpenOptions, kvStore: boolean): Promise<StoreEngine<Ops>> {
  const readOnly = options.readOnly ?? false;
  checkExistingFile(path, readOnly);
  const instance = await DuckDBInstance.create(path, {
    access_mode: readOnly ? 'READ_ONLY' : 'READ_WRITE',
    enable_external_access: 'false',
    autoinstall_known_extensions: 'false',
    autoload_known_extensions: 'false',
    allow_community_extensions: 'false',
  });
  let writer: Writer | undefined;
  try {
    writer = new Writer(await instance.connect());
    const c = writer.conn;
    if (!readOnly) await (kvStore ? kvSchema : blobSchema)(c);
    else if (kvStore && (await objectType(c, 'kv_state')) === undefined) {
      throw failedPrecondition(
        (await objectType(c, 'kv')) === 'BASE TABLE'
          ? 'the store was written by buffdb 0.1; open it once without --read-only to upgrade it'
          : 'not a buffdb KV store (no kv_state table)',
      );
    }
    // From here on no statement can change a setting, whatever the SQL guard lets through.
    await c.run('SET lock_configuration = true');
    const tables: Tables = [];
    const ops = await (kvStore ? kvEngineOps : blobEngineOps)(writer, readOnly, tables);
    if (!readOnly) for (const t of tables) await c.run(t.stageDdl());
    return new DuckEngine(instance, writer, ops as Ops, tables, kvStore, readOnly);
  } catch (err) {
    writer?.close();
    instance.closeSync();
    throw mapDuckDbError(err);
  }
}

export const duckdbBackend: BackendImpl = {
  async openKv(path, options = {}) {
    return withSnapshots(await openDuck<KvEngineOps>(path, options, true), duckdbSnapshot(path));
  },
  async openBlob(path, options = {}) {
    return withSnapshots(await openDuck<BlobEngineOps>(path, options, false), duckdbSnapshot(path));
  },
  checkPath(path, label, readOnly) {
    checkFilePath(path, label, readOnly);
    // DuckDB writes its journal to PATH.wal beside the store.
    const wal = `${path}.wal`;
    if (!readOnly && path !== ':memory:' && existsSync(wal) && !writable(wal)) {
      throw failedPrecondition(`${label} store ${path}: its journal ${wal} is not writable`);
    }
  },
};
