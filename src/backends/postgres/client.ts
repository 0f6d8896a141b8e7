/**
 * Connections to PostgreSQL with the settings buffdb relies on: reconnects within about a second
 * of the database coming back (the driver's default back-off grows to 20 s), a connect timeout
 * well under the 30 s a client may wait, a lock timeout so a stuck peer cannot hold everyone up,
 * and 64-bit integers as bigint.
 */
import postgres from 'postgres';
import { failedPrecondition } from '../../errors.js';
import { isConnectionError, mapPgError, sqlState } from './errors.js';
import type { PgLocation } from './location.js';

export type Sql = postgres.Sql<{ bigint: bigint }>;

/** Connect attempts give up after this long (the driver's default is 30 s). */
const CONNECT_TIMEOUT_S = 5;
/** Reconnect delay: 50 ms doubling to at most 1 s, with jitter (the driver's default reaches 20 s). */
const backoff = (retries: number): number => Math.min(0.05 * 2 ** retries, 1) * (0.5 + Math.random() / 2);

/** 64-bit integers as bigint (the driver's default is a string). */
const BIGINT = { to: 20, from: [20], serialize: (x: bigint) => x.toString(), parse: (x: string) => BigInt(x) };

export interface ClientOptions {
  max: number;
  /** Startup parameters (search_path, statement_timeout, …). */
  connection: Record<string, string>;
  user?: string;
  password?: string;
  /** Extra type parsers (raw SQL reads more types than buffdb's own statements). */
  types?: Record<string, postgres.PostgresType>;
  /** Told which connection (by the driver's id) each statement goes to, and when a connection closes. */
  connections?: ConnectionWatch;
}

/**
 * The driver sends a statement given to a reserved connection even after that connection closed,
 * and then fails outside any promise (a write to a closed socket). So the engine follows which
 * connection it holds and stops using it once it closes.
 */
export class ConnectionWatch {
  /** Set just before a statement is handed to the driver: it learns its connection id. */
  capture: ((id: number) => void) | undefined;
  private readonly closedListeners = new Map<number, () => void>();

  onStatement = (id: number): void => {
    this.capture?.(id);
    this.capture = undefined;
  };

  onClose = (id: number): void => {
    this.closedListeners.get(id)?.();
  };

  /** Calls `listener` if connection `id` closes; returns a function that stops watching. */
  watch(id: number, listener: () => void): () => void {
    this.closedListeners.set(id, listener);
    return () => {
      if (this.closedListeners.get(id) === listener) this.closedListeners.delete(id);
    };
  }
}

export function createClient(loc: PgLocation, options: ClientOptions): Sql {
  return postgres(loc.url, {
    max: options.max,
    connect_timeout: CONNECT_TIMEOUT_S,
    backoff,
    idle_timeout: 60,
    onnotice: () => {},
    ...(options.user !== undefined ? { user: options.user } : {}),
    ...(options.password !== undefined ? { password: options.password } : {}),
    connection: { application_name: 'buffdb', ...options.connection },
    types: { bigint: BIGINT, ...options.types },
    ...(options.connections
      ? { debug: options.connections.onStatement as never, onclose: options.connections.onClose }
      : {}),
  }) as unknown as Sql;
}

/** Settings of buffdb's own sessions. */
export function ownerSettings(
  schema: string,
  durability: 'full' | 'normal',
  readOnly: boolean,
): Record<string, string> {
  return {
    search_path: schema,
    // full: a commit is answered once it is flushed to the WAL; normal: survives buffdb crashing
    // (the database holds the data) but the database may lose its last commits on a power cut.
    synchronous_commit: durability === 'normal' ? 'off' : 'on',
    // A peer server holding the store lock for this long is stuck: fail (UNAVAILABLE) rather than wait.
    lock_timeout: '10s',
    // A batch is never idle for long; a server frozen mid-batch must not hold the lock forever.
    idle_in_transaction_session_timeout: '60s',
    ...(readOnly ? { default_transaction_read_only: 'on' } : {}),
  };
}

/**
 * Checks that the database answers; with `wait`, keeps trying (every second) while it is
 * unreachable. Errors are one sentence naming the database (without its password).
 */
export async function checkReachable(sql: Sql, loc: PgLocation, wait: boolean): Promise<void> {
  let said = false;
  for (;;) {
    try {
      await sql`SELECT 1`;
      return;
    } catch (err) {
      const state = sqlState(err);
      // Missing database or refused login: worth waiting for only if asked (an operator may be creating it).
      const transient = isConnectionError(err) || state === '3D000' || state === '28P01' || state === '28000';
      if (!wait || !transient) {
        throw failedPrecondition(`cannot use PostgreSQL at ${loc.display}: ${mapPgError(err).message}`);
      }
      if (!said) {
        process.stderr.write(
          `${new Date().toISOString()} buffdb: waiting for PostgreSQL at ${loc.display} (${mapPgError(err).message})\n`,
        );
        said = true;
      }
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}
