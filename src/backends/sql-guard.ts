/**
 * Keeps raw SQL inside its own store. Engines give us no authorizer hook that covers everything
 * (better-sqlite3 exposes none), so statements are tokenised here — comments and quoted text
 * removed — and refused by what they are, before the engine ever prepares them.
 */

import { invalidArgument, permissionDenied, type StoreError } from '../errors.js';

export class SqlRefusedError extends Error {
  override readonly name = 'SqlRefusedError';
}

/** Not a refusal: there is nothing to run (INVALID_ARGUMENT rather than PERMISSION_DENIED). */
export class SqlInvalidError extends Error {
  override readonly name = 'SqlInvalidError';
}

/** Statements that reach outside the store, or take transaction control away from buffdb. */
const REFUSED_STATEMENTS = new Map<string, string>([
  ['ATTACH', 'ATTACH would open another database file'],
  ['DETACH', 'DETACH is not available'],
  ['VACUUM', 'VACUUM (and VACUUM INTO a file) is not available'],
  ['BEGIN', 'buffdb manages transactions itself; use the BeginTransaction RPC'],
  ['COMMIT', 'buffdb manages transactions itself; use the CommitTransaction RPC'],
  ['END', 'buffdb manages transactions itself; use the CommitTransaction RPC'],
  ['ROLLBACK', 'buffdb manages transactions itself; use the RollbackTransaction RPC'],
  ['SAVEPOINT', 'buffdb manages transactions itself'],
  ['RELEASE', 'buffdb manages transactions itself'],
  ['INSTALL', 'installing extensions is not allowed'],
  ['LOAD', 'loading extensions is not allowed'],
  ['COPY', 'COPY reads or writes files outside the store'],
  ['EXPORT', 'EXPORT writes files outside the store'],
  ['IMPORT', 'IMPORT reads files outside the store'],
  ['SET', 'changing engine settings is not allowed'],
  ['RESET', 'changing engine settings is not allowed'],
  ['CALL', 'CALL is not available'],
  ['CHECKPOINT', 'CHECKPOINT is managed by buffdb'],
  ['FORCE', 'FORCE CHECKPOINT is managed by buffdb'],
  ['USE', 'USE would switch to another database'],
  ['DETACH', 'DETACH is not available'],
  ['SUMMARIZE', 'SUMMARIZE is not available'],
]);

/** Function names that read or write files or load code, anywhere in a statement. */
const REFUSED_FUNCTIONS = new Set([
  'load_extension',
  'readfile',
  'writefile',
  'edit',
  'fts3_tokenizer',
  'sqlite_dbpage',
  'read_csv',
  'read_csv_auto',
  'read_parquet',
  'parquet_scan',
  'read_json',
  'read_json_auto',
  'read_json_objects',
  'read_ndjson',
  'read_ndjson_auto',
  'read_text',
  'read_blob',
  'glob',
  'sniff_csv',
  'parquet_metadata',
  'parquet_schema',
  'duckdb_secrets',
  'getenv',
  'query_table',
  // DuckDB: `query('…')` runs a SQL string the guard never sees; scanners of foreign files.
  'query',
  'sqlite_scan',
  'sqlite_attach',
  'read_xlsx',
  'st_read',
  'iceberg_scan',
  'delta_scan',
  'json_execute_serialized_sql',
  'read_json_objects_auto',
  'postgres_scan',
  'postgres_attach',
  'mysql_scan',
  'read_csv_auto',
  'read_parquet',
]);

/** Names refused wherever they appear (called or not): raw pages and code loading. */
const REFUSED_NAMES = new Set(['sqlite_dbpage', 'load_extension', 'fts3_tokenizer']);

/** Engine bookkeeping tables raw SQL may read but never write. */
const INTERNAL_TABLES = new Set([
  'sqlite_sequence',
  'sqlite_schema',
  'sqlite_master',
  'sqlite_temp_master',
  'sqlite_temp_schema',
]);

/** Allowed pragmas that are read-only only when they are given no argument. */
const UNSETTABLE_PRAGMAS = new Set(['journal_mode', 'synchronous', 'user_version']);

/** Tables the services themselves depend on: raw SQL may change their rows, never their shape. */
const SERVICE_TABLES = new Set(['kv', 'blob']);

/**
 * buffdb's own tables: the revisioned key space behind the `kv` view (`kv_state`) and the maps
 * (history, leases, chunks, …) in `_buffdb_*` tables. Raw SQL may read them, never write them:
 * every KV write must become a revision that watchers see.
 */
function isInternalTable(word: string): boolean {
  return INTERNAL_TABLES.has(word) || word === 'kv_state' || word === 'blob_id_seq' || word.startsWith('_buffdb_');
}

/** Object kinds a CREATE names (DuckDB's CREATE OR REPLACE swaps the object in place). */
const CREATED_KINDS = new Set(['table', 'view', 'sequence', 'macro', 'function', 'type', 'index']);

/** The (unqualified, lowercased) name of the object a CREATE statement makes. */
function createdName(tokens: Token[], from: number): string | undefined {
  let i = tokens.findIndex((t, j) => j > from && t.kind === 'word' && CREATED_KINDS.has(t.text.toLowerCase()));
  if (i === -1) return undefined;
  i++;
  while (tokens[i]?.kind === 'word' && /^(if|not|exists)$/i.test(tokens[i]!.text) && !tokens[i]!.quoted) i++;
  // catalog.schema.name: the last part is the name.
  while (tokens[i + 1]?.text === '.' && tokens[i + 2]?.kind === 'word') i += 2;
  return tokens[i]?.kind === 'word' ? tokens[i]!.text.toLowerCase() : undefined;
}

/** The status a guard refusal maps to (each SQL backend's mapError starts here). */
export function mapGuardError(err: unknown): StoreError | undefined {
  if (err instanceof SqlRefusedError) return permissionDenied(err.message);
  if (err instanceof SqlInvalidError) return invalidArgument(err.message);
  return undefined;
}

/** Read-only pragmas: introspection that cannot change durability or reach other files. */
const ALLOWED_PRAGMAS = new Set([
  'table_info',
  'table_xinfo',
  'table_list',
  'index_list',
  'index_info',
  'index_xinfo',
  'foreign_key_list',
  'foreign_key_check',
  'integrity_check',
  'quick_check',
  'page_count',
  'page_size',
  'freelist_count',
  'user_version',
  'schema_version',
  'data_version',
  'compile_options',
  'function_list',
  'collation_list',
  'pragma_list',
  'encoding',
  'journal_mode',
  'synchronous',
  'show_tables',
  'show_tables_expanded',
  'database_size',
]);

interface Token {
  kind: 'word' | 'punct';
  text: string;
  /** A quoted identifier ("x", `x`, [x]): its text without the quotes. */
  quoted?: boolean;
}

/** Splits SQL into words and punctuation, dropping comments, string literals and quoted names. */
export function tokenize(sql: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  const n = sql.length;
  while (i < n) {
    const c = sql[i]!;
    if (c === '-' && sql[i + 1] === '-') {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
    } else if (c === '/' && sql[i + 1] === '*') {
      const end = sql.indexOf('*/', i + 2);
      i = end === -1 ? n : end + 2;
    } else if (c === "'" || c === '"' || c === '`' || c === '[') {
      const close = c === '[' ? ']' : c;
      let j = i + 1;
      for (;;) {
        const k = sql.indexOf(close, j);
        if (k === -1) {
          j = n;
          break;
        }
        if (close !== ']' && sql[k + 1] === close) {
          j = k + 2;
          continue;
        }
        j = k + 1;
        break;
      }
      // A quoted identifier can still name a function ("load_extension"(...)): keep it as a word.
      tokens.push(
        c === "'" ? { kind: 'punct', text: "''" } : { kind: 'word', text: sql.slice(i + 1, j - 1), quoted: true },
      );
      i = j;
    } else if (/[A-Za-z_\u0080-\uffff]/.test(c)) {
      let j = i + 1;
      while (j < n && /[A-Za-z0-9_$\u0080-\uffff]/.test(sql[j]!)) j++;
      tokens.push({ kind: 'word', text: sql.slice(i, j) });
      i = j;
    } else if (/\s/.test(c)) {
      i++;
    } else {
      tokens.push({ kind: 'punct', text: c });
      i++;
    }
  }
  return tokens;
}

/** Throws SqlRefusedError if `sql` could reach outside its store; returns otherwise. */
export function assertSqlAllowed(sql: string): void {
  // Engines stop reading at a NUL: what they would run is not what was checked.
  if (sql.includes('\0')) throw new SqlInvalidError('SQL text contains a NUL character');
  const tokens = tokenize(sql);
  // One statement per request: a trailing `;` is fine, a second statement is not.
  const semi = tokens.findIndex((t) => t.text === ';');
  if (semi !== -1 && tokens.slice(semi + 1).some((t) => t.text !== ';')) {
    throw new SqlRefusedError('only one SQL statement per request is allowed');
  }
  let k = 0;
  while (tokens[k]?.kind === 'word' && /^(explain|query|plan|analyze)$/i.test(tokens[k]!.text)) k++;
  const first = tokens[k]?.text.toUpperCase();
  if (first === undefined) throw new SqlInvalidError('empty SQL statement: RawQuery.query holds no SQL');
  const refusal = REFUSED_STATEMENTS.get(first);
  if (refusal !== undefined) throw new SqlRefusedError(`${first} refused: ${refusal}`);
  if (first === 'PRAGMA') {
    const name = tokens[k + 1]?.text.toLowerCase() ?? '';
    const rest = tokens.slice(k + 2);
    if (
      !ALLOWED_PRAGMAS.has(name) ||
      rest.some((t) => t.text === '=') ||
      (UNSETTABLE_PRAGMAS.has(name) && rest.length > 0)
    ) {
      throw new SqlRefusedError(`PRAGMA ${name} refused: only read-only introspection pragmas are allowed`);
    }
  }
  if (
    ((first === 'DROP' || first === 'ALTER') &&
      tokens.some((t) => t.kind === 'word' && SERVICE_TABLES.has(t.text.toLowerCase()))) ||
    (first === 'CREATE' && SERVICE_TABLES.has(createdName(tokens, k) ?? ''))
  ) {
    throw new SqlRefusedError(`${first} of the kv or blob table refused: the Kv and Blob services depend on it`);
  }
  const internal = tokens.find((t) => t.kind === 'word' && isInternalTable(t.text.toLowerCase()));
  const writes = tokens.some(
    (t) => t.kind === 'word' && !t.quoted && /^(insert|update|delete|replace|drop|alter|create)$/i.test(t.text),
  );
  if (internal && (writes || (first !== 'SELECT' && first !== 'WITH' && first !== 'VALUES'))) {
    throw new SqlRefusedError(`${internal.text} may only be read: it keeps the schema and the never-reused blob ids`);
  }
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i]!;
    if (t.kind !== 'word') continue;
    const word = t.text.toLowerCase();
    // Table-valued pragma functions (pragma_table_info(…)): the same read-only list as PRAGMA.
    if (word.startsWith('pragma_') && (!ALLOWED_PRAGMAS.has(word.slice(7)) || UNSETTABLE_PRAGMAS.has(word.slice(7)))) {
      throw new SqlRefusedError(`${word} refused: only read-only introspection pragmas are allowed`);
    }
    if (REFUSED_FUNCTIONS.has(word) && tokens[i + 1]?.text === '(') {
      throw new SqlRefusedError(`${word}() refused: it reads or writes outside the store`);
    }
    if (REFUSED_NAMES.has(word)) {
      throw new SqlRefusedError(`${word} refused: it reaches below or outside the store`);
    }
    // DuckDB reads a file named by a string or a quoted path after FROM/JOIN (replacement scans).
    if (!t.quoted && (word === 'from' || word === 'join')) {
      const next = tokens[i + 1];
      if (
        next &&
        ((next.kind === 'punct' && next.text === "''") || (next.quoted === true && /[./\\:]/.test(next.text)))
      ) {
        throw new SqlRefusedError(`${word.toUpperCase()} a quoted path refused: name a table (kv or blob), not a file`);
      }
    }
    if (word === 'secret' && !t.quoted && first === 'CREATE' && i <= k + 4) {
      throw new SqlRefusedError('CREATE SECRET refused: credentials are not managed through raw SQL');
    }
    if ((word === 'attach' || word === 'pragma') && i > k) {
      throw new SqlRefusedError(`${word.toUpperCase()} inside a statement is refused`);
    }
  }
}
