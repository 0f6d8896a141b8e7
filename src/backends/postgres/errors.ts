/** PostgreSQL's (and the postgres driver's) errors as the status a client can act on. */
import {
  asStoreError,
  deadlineExceeded,
  failedPrecondition,
  invalidArgument,
  permissionDenied,
  resourceExhausted,
  StoreError,
  unavailable,
} from '../../errors.js';
import { mapGuardError } from '../sql-guard.js';

interface PgErrorShape {
  name?: unknown;
  code?: unknown;
  message?: unknown;
  detail?: unknown;
}

const shape = (err: unknown): PgErrorShape => (typeof err === 'object' && err !== null ? err : {}) as PgErrorShape;

/** SQLSTATE of a server error; '' for driver and network errors. */
export function sqlState(err: unknown): string {
  const e = shape(err);
  return e.name === 'PostgresError' && typeof e.code === 'string' ? e.code : '';
}

/** Serialization failure or deadlock: the transaction did not commit and may simply run again. */
export function isRetryable(err: unknown): boolean {
  const state = sqlState(err);
  return state === '40001' || state === '40P01';
}

/** The driver's codes for a connection that failed or went away, and Node's network errors. */
const CONNECTION_CODES = new Set([
  'CONNECTION_CLOSED',
  'CONNECTION_ENDED',
  'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT',
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
]);

/**
 * The database cannot be reached right now (down, restarting, connection killed): worth waiting
 * for (`--wait-for-db`) and answered UNAVAILABLE to clients.
 */
export function isConnectionError(err: unknown): boolean {
  const e = shape(err);
  const state = sqlState(err);
  if (state.startsWith('08') || state === '57P01' || state === '57P02' || state === '57P03') return true;
  return state === '' && typeof e.code === 'string' && CONNECTION_CODES.has(e.code);
}

function messageOf(err: unknown): string {
  const e = shape(err);
  const message = typeof e.message === 'string' ? e.message : String(err);
  return typeof e.detail === 'string' && e.detail ? `${message} (${e.detail})` : message;
}

export function mapPgError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const guarded = mapGuardError(err);
  if (guarded) return guarded;
  const message = messageOf(err);
  if (isConnectionError(err)) {
    return unavailable(`the database is unreachable or restarting, retry: ${message}`);
  }
  const state = sqlState(err);
  if (isRetryable(err)) return unavailable(`the database could not serialise this write, retry: ${message}`);
  if (state === '55P03') return unavailable(`the store is busy (lock wait timed out), retry: ${message}`);
  if (state === '57014') return deadlineExceeded(`the statement ran longer than allowed and was cancelled: ${message}`);
  if (state === '25006') {
    return failedPrecondition(`the store is read-only; writes are refused: ${message}`);
  }
  if (state === '42501') return permissionDenied(`refused by the database: ${message}`);
  if (state.startsWith('53')) return resourceExhausted(`the database is out of resources: ${message}`);
  if (state === '54000' || state === '54001') return resourceExhausted(`value too large for the store: ${message}`);
  if (state === '28P01' || state === '28000') return failedPrecondition(`the database refused the login: ${message}`);
  if (state === '3D000') return failedPrecondition(`the database does not exist: ${message}`);
  // Syntax, undefined names, data and constraint errors: the caller's SQL or data.
  if (/^(42|22|23|2F|0A)/.test(state)) return invalidArgument(message);
  if (state.startsWith('XX')) return asStoreError(new Error(`database internal error: ${message}`));
  return asStoreError(err instanceof Error ? err : new Error(message));
}
