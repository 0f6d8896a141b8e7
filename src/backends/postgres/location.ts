/**
 * A PostgreSQL store location: a connection URL, `postgres://user[:password]@host[:port]/database`,
 * with buffdb's own query parameters taken off before the driver sees it:
 *
 *   schema=NAME        the schema holding this store's tables (default buffdb_kv / buffdb_blob), so
 *                      the KV and BLOB stores may name the same database
 *   sql_role=NAME      an operator-provisioned LOGIN role that raw SQL runs as (see docs/scaling-out.md);
 *   sql_password=PW    its password (or BUFFDB_PG_SQL_PASSWORD). Without sql_role buffdb creates one.
 *
 * Every other query parameter (sslmode, application_name, …) goes to the driver unchanged.
 */
import { createHash } from 'node:crypto';
import { invalidArgument } from '../../errors.js';

export type StoreKind = 'kv' | 'blob';

export interface PgLocation {
  /** The URL for the driver: buffdb's parameters removed. */
  url: string;
  /** For messages: the URL without its password. */
  display: string;
  database: string;
  schema: string;
  /** Operator-provisioned sandbox role, if any. */
  sqlRole: string | undefined;
  sqlPassword: string | undefined;
}

const IDENT = /^[a-z_][a-z0-9_]{0,62}$/;

/** A URL the postgres backend accepts (other backends take file paths). */
export function isPgUrl(location: string): boolean {
  return /^postgres(ql)?:\/\//i.test(location);
}

/** Parses and checks a store URL; throws INVALID_ARGUMENT with one sentence naming the option. */
export function parseLocation(location: string, kind: StoreKind): PgLocation {
  const option = `--${kind}-store`;
  if (!isPgUrl(location)) {
    throw invalidArgument(
      `${option} ${JSON.stringify(location)} is not a PostgreSQL URL; the postgres backend takes ` +
        'postgres://user@host:5432/database',
    );
  }
  let url: URL;
  try {
    url = new URL(location);
  } catch {
    throw invalidArgument(`${option} is not a valid URL (expected postgres://user@host:5432/database)`);
  }
  const database = decodeURIComponent(url.pathname.replace(/^\//, ''));
  if (database === '' || database.includes('/')) {
    throw invalidArgument(
      `${option} names no database: write it after the host, as postgres://user@host:5432/database`,
    );
  }
  if (url.port !== '' && !(Number(url.port) > 0 && Number(url.port) < 65536)) {
    throw invalidArgument(`${option} has an invalid port ${url.port}`);
  }
  const params = url.searchParams;
  const schema = params.get('schema') ?? `buffdb_${kind}`;
  if (!IDENT.test(schema)) {
    throw invalidArgument(
      `${option}: schema=${JSON.stringify(schema)} is not a plain lower-case SQL name (letters, digits, _; at most 63)`,
    );
  }
  const sqlRole = params.get('sql_role') ?? undefined;
  if (sqlRole !== undefined && !IDENT.test(sqlRole)) {
    throw invalidArgument(`${option}: sql_role=${JSON.stringify(sqlRole)} is not a plain lower-case SQL name`);
  }
  const sqlPassword = params.get('sql_password') ?? process.env.BUFFDB_PG_SQL_PASSWORD ?? undefined;
  params.delete('schema');
  params.delete('sql_role');
  params.delete('sql_password');
  const display = new URL(url.toString());
  if (display.password) display.password = '***';
  return { url: url.toString(), display: display.toString(), database, schema, sqlRole, sqlPassword };
}

/**
 * The name of the role buffdb creates for raw SQL on one store: unique per database and schema
 * (roles are global to a PostgreSQL cluster), at most 63 characters.
 */
export function sandboxRoleName(loc: PgLocation): string {
  const hash = createHash('sha256').update(`${loc.database}\0${loc.schema}`).digest('hex').slice(0, 10);
  return `buffdb_sql_${loc.schema.slice(0, 40)}_${hash}`;
}

/** A quoted SQL identifier (names here are checked against IDENT, so quoting is belt and braces). */
export const ident = (name: string): string => `"${name.replaceAll('"', '""')}"`;
