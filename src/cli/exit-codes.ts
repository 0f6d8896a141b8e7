/** Exit statuses of the buffdb command line, and how an error maps to one. Kept tiny: main.ts loads it always. */
import { StoreError, status } from '../errors.js';

export const EXIT = {
  /** The command did what was asked (a comparison that holds included). */
  OK: 0,
  /** `kv eq` / `kv not-eq` / `blob eq-data` / `blob not-eq-data`: the comparison is false. */
  FALSE: 1,
  /** Bad command line: unknown command or option, missing or extra argument, bad blob id, unknown backend. */
  USAGE: 2,
  /** A key or blob id that does not exist. */
  NOT_FOUND: 3,
  /** Anything else: unreadable input file, store file damaged or not a database, disk full, locked store, … */
  FAILURE: 4,
} as const;

export const EXIT_CODES_HELP = `
Exit status:
  0  success (for eq / not-eq: the comparison holds)
  1  a comparison (eq, not-eq, eq-data, not-eq-data) is false
  2  usage error: unknown command or option, missing argument, bad blob id, unknown backend
  3  a key or blob id does not exist
  4  any other failure: input file unreadable, store file damaged or not a database, storage full or busy`;

/** A failure the CLI reports as one line with a chosen exit status. */
export class CliError extends Error {
  constructor(
    readonly exitCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof CliError) return err.exitCode;
  if (err instanceof StoreError && err.code === status.NOT_FOUND) return EXIT.NOT_FOUND;
  return EXIT.FAILURE;
}

/** One line, whatever the error: never a stack trace. */
export function describeError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/\s*\n\s*/g, ' ').trim() || 'unexpected error';
}
