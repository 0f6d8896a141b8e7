/**
 * The one error type of buffdb, at the bottom of the tree: it imports nothing, so backends, the
 * store, the server and the CLI share it without loading each other (or grpc-js). Each error
 * carries the gRPC status code a client sees; the CLI derives its exit status from the same code.
 */

/** gRPC status codes (the numbers are fixed by gRPC; grpc-js uses the same ones). */
export const status = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type StatusCode = (typeof status)[keyof typeof status];

const names = Object.fromEntries(Object.entries(status).map(([name, code]) => [code, name])) as Record<number, string>;

/** The name of a status code (`NOT_FOUND`), for messages. */
export function statusName(code: number): string {
  return names[code] ?? `status ${code}`;
}

export class StoreError extends Error {
  constructor(
    readonly code: StatusCode,
    message: string,
  ) {
    super(message);
    this.name = 'StoreError';
  }
}

/**
 * UNAVAILABLE after the engine was asked to commit and the answer was lost (a database server that
 * went away mid-COMMIT): the batch may or may not be committed, so it must not be run again.
 */
export class OutcomeUnknownError extends StoreError {
  constructor(message: string) {
    super(status.UNAVAILABLE, message);
    this.name = 'OutcomeUnknownError';
  }
}

export class NotFoundError extends StoreError {
  constructor(message: string) {
    super(status.NOT_FOUND, message);
    this.name = 'NotFoundError';
  }
}

/** How a key is named in a message: as text when it is printable UTF-8, else as hex. */
export function describeKey(key: string | Uint8Array): string {
  if (typeof key === 'string') return JSON.stringify(key);
  const buf = Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  const text = buf.toString('utf8');
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this looks for
  if (Buffer.byteLength(text) === buf.length && !/[\u0000-\u001f\ufffd]/.test(text)) return JSON.stringify(text);
  return `0x${buf.toString('hex')}`;
}

export const keyNotFound = (key: string | Uint8Array): NotFoundError =>
  new NotFoundError(`key not found: ${describeKey(key)}`);
export const idNotFound = (id: bigint | number): NotFoundError => new NotFoundError(`blob id not found: ${id}`);

export const invalidArgument = (message: string): StoreError => new StoreError(status.INVALID_ARGUMENT, message);
export const failedPrecondition = (message: string): StoreError => new StoreError(status.FAILED_PRECONDITION, message);
export const unimplemented = (message: string): StoreError => new StoreError(status.UNIMPLEMENTED, message);
export const aborted = (message: string): StoreError => new StoreError(status.ABORTED, message);
export const permissionDenied = (message: string): StoreError => new StoreError(status.PERMISSION_DENIED, message);
export const resourceExhausted = (message: string): StoreError => new StoreError(status.RESOURCE_EXHAUSTED, message);
export const unavailable = (message: string): StoreError => new StoreError(status.UNAVAILABLE, message);
export const outOfRange = (message: string): StoreError => new StoreError(status.OUT_OF_RANGE, message);
export const deadlineExceeded = (message: string): StoreError => new StoreError(status.DEADLINE_EXCEEDED, message);
export const dataLoss = (message: string): StoreError => new StoreError(status.DATA_LOSS, message);
export const internal = (message: string): StoreError => new StoreError(status.INTERNAL, message);

export const shuttingDown = (): StoreError => unavailable('the store is shutting down');
export const readOnlyStore = (): StoreError => failedPrecondition('the store is open read-only; writes are refused');

/**
 * A StoreError as is; anything else (a bug, or an engine error no backend mapped) as INTERNAL with
 * its message. Engine errors are mapped by their backend's `mapError` before they get here.
 */
export function asStoreError(err: unknown): StoreError {
  if (err instanceof StoreError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return internal(message);
}
