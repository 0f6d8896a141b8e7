/**
 * Checks of a store path given on the command line that hold for every file-based engine, so a
 * mistake gets a sentence naming the path instead of an engine's "unable to open database file".
 * An engine adds its own rules in its `checkPath` (which files it needs beside the store).
 */
import { accessSync, constants, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { failedPrecondition, invalidArgument } from '../errors.js';

export function writable(path: string): boolean {
  try {
    accessSync(path, constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/** `label`: "KV" or "BLOB". Throws INVALID_ARGUMENT for a malformed path, FAILED_PRECONDITION otherwise. */
export function checkFilePath(path: string, label: string, readOnly: boolean): void {
  const option = `--${label.toLowerCase()}-store`;
  if (path === '') throw invalidArgument(`${option} must not be empty`);
  if (path.includes('\0')) throw invalidArgument(`${option} contains a NUL character`);
  if (path === ':memory:') return;
  if (/^file:/i.test(path)) {
    throw invalidArgument(
      `${option} ${path} looks like a URI; give a plain file path (./${path} if that is really its name)`,
    );
  }
  const abs = resolve(path);
  const st = statSync(abs, { throwIfNoEntry: false });
  if (st?.isDirectory()) {
    throw failedPrecondition(
      `${label} store ${path} is a directory; give a file path such as ${path.replace(/\/+$/, '')}/${label.toLowerCase()}_store.db`,
    );
  }
  if (st && !st.isFile()) throw failedPrecondition(`${label} store ${path} is not a regular file`);
  const dir = dirname(abs);
  if (!st) {
    if (readOnly)
      throw failedPrecondition(`${label} store ${path} does not exist (--read-only serves existing stores only)`);
    const dst = statSync(dir, { throwIfNoEntry: false });
    if (!dst) throw failedPrecondition(`cannot create the ${label} store ${path}: directory ${dir} does not exist`);
    if (!dst.isDirectory())
      throw failedPrecondition(`cannot create the ${label} store ${path}: ${dir} is not a directory`);
  }
  if (readOnly) return;
  // The engine writes the store and, next to it, its journal files.
  if (!writable(dir)) {
    throw failedPrecondition(
      `cannot write in ${dir}, the directory of the ${label} store ${path} ` +
        '(read-only filesystem or no permission); use --read-only to serve existing stores read-only',
    );
  }
  if (st && !writable(abs))
    throw failedPrecondition(`${label} store ${path} is not writable; use --read-only to serve it read-only`);
}
