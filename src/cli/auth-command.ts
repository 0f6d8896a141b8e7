/**
 * `buffdb auth add-token NAME --auth-file FILE [permissions…]`: adds a token, prints it once.
 * `buffdb auth add-user NAME [--role ROLE…]`: adds an etcd user, its password from stdin or a prompt.
 * `buffdb auth add-role NAME [permissions…]`: adds a role.
 */
import { type AuthFile, addToken, parseAuthFile, readOrNewAuthFile, writeAuthFile } from '../auth/auth-file.js';
import { addRole, addUser, ROOT_USER } from '../auth/etcd-admin.js';
import { hashPassword } from '../auth/passwords.js';
import { type Grant, ROOT_ROLE } from '../auth/permissions.js';
import { StoreError } from '../errors.js';
import { inputChunks, peekInput, writeOutput } from './binary-io.js';
import { CliError, EXIT } from './exit-codes.js';

export interface TokenPermissions {
  /** Key prefixes ('' = every key). */
  kvRead?: string[];
  kvWrite?: string[];
  blobRead?: boolean;
  blobWrite?: boolean;
  queryRead?: boolean;
  queryWrite?: boolean;
  admin?: boolean;
  sync?: boolean;
}

export function grantsFrom(p: TokenPermissions): Grant[] {
  const kv = (prefixes: string[] | undefined, right: 'read' | 'write'): Grant[] =>
    [...new Set(prefixes ?? [])].map((prefix) => ({ service: 'kv', [right]: true, ...(prefix ? { prefix } : {}) }));
  const grants: Grant[] = [...kv(p.kvRead, 'read'), ...kv(p.kvWrite, 'write')];
  if (p.blobRead || p.blobWrite)
    grants.push({ service: 'blob', read: p.blobRead ?? false, write: p.blobWrite ?? false });
  if (p.queryRead || p.queryWrite) {
    grants.push({ service: 'query', read: p.queryRead ?? false, write: p.queryWrite ?? false });
  }
  if (p.admin) grants.push({ service: 'admin', read: true, write: true });
  if (p.sync) grants.push({ service: 'sync', read: true, write: true });
  return grants;
}

export async function authAddToken(name: string, authFile: string, permissions: TokenPermissions): Promise<void> {
  const grants = grantsFrom(permissions);
  if (grants.length === 0) {
    throw new CliError(
      EXIT.USAGE,
      'a token needs at least one permission: --kv-read, --kv-write, --blob-read, --blob-write, --query-read, --query-write, --admin or --sync',
    );
  }
  const token = addToken(authFile, name, grants);
  await writeOutput(Buffer.from(`${token}\n`));
}

/**
 * Changes the auth file (created if missing) — or, with `dryRun`, only checks that the change can
 * be made; etcd's errors become one line, status 4.
 */
function changeAuthFile(path: string, change: (file: AuthFile) => void, dryRun = false): void {
  const file = readOrNewAuthFile(path);
  try {
    change(file);
  } catch (err) {
    if (err instanceof StoreError) throw new CliError(EXIT.FAILURE, `auth file ${path}: ${err.message}`);
    throw err;
  }
  if (!dryRun) writeAuthFile(path, parseAuthFile(JSON.stringify(file), path));
}

/** Reads a line from the terminal without echoing it. */
function promptHidden(question: string): Promise<string> {
  const stdin = process.stdin;
  return new Promise((resolve, reject) => {
    let answer = '';
    // Echo goes off before the prompt shows, so nothing typed after it is echoed.
    stdin.setRawMode(true);
    process.stderr.write(question);
    stdin.resume();
    stdin.setEncoding('utf8');
    const done = (err?: Error): void => {
      stdin.off('data', onData);
      stdin.setRawMode(false);
      stdin.pause();
      process.stderr.write('\n');
      if (err) reject(err);
      else resolve(answer);
    };
    const onData = (chunk: string): void => {
      for (const ch of chunk) {
        if (ch === '\r' || ch === '\n') {
          done();
          return;
        }
        if (ch === '\u0003' || ch === '\u0004') {
          done(new CliError(EXIT.FAILURE, 'no password given'));
          return;
        }
        if (ch === '\u007f' || ch === '\b') answer = answer.slice(0, -1);
        else answer += ch;
      }
    };
    stdin.on('data', onData);
  });
}

/** The new user's password: asked twice on a terminal, else all of stdin less one final newline. */
async function readPassword(name: string): Promise<string> {
  if (process.stdin.isTTY) {
    const first = await promptHidden(`Password of ${name}: `);
    const again = await promptHidden(`Type password of ${name} again for confirmation: `);
    if (first !== again) throw new CliError(EXIT.FAILURE, 'the two passwords differ; nothing was changed');
    return first;
  }
  const { whole } = await peekInput((await inputChunks('-')).chunks, MAX_PASSWORD_BYTES);
  if (whole === undefined) throw new CliError(EXIT.USAGE, `a password is at most ${MAX_PASSWORD_BYTES} bytes`);
  return whole.toString('utf8').replace(/\r?\n$/, '');
}

/** Far above any real password; stdin beyond it is a mistake (a file piped in), not a password. */
const MAX_PASSWORD_BYTES = 4096;

export async function authAddUser(name: string, authFile: string, roles: string[]): Promise<void> {
  if (name === '') throw new CliError(EXIT.USAGE, 'a user needs a name');
  // The user root is etcd's administrator only with the role root: given at once, as `etcdctl auth enable` would.
  if (name === ROOT_USER && !roles.includes(ROOT_ROLE)) roles = [...roles, ROOT_ROLE];
  // The file is checked before the password is asked for, and again when written.
  changeAuthFile(authFile, (file) => addUser(file, name, undefined, roles), true);
  const password = await readPassword(name);
  if (password === '') throw new CliError(EXIT.USAGE, 'the password is empty; nothing was changed');
  const scrypt = await hashPassword(password);
  changeAuthFile(authFile, (file) => addUser(file, name, scrypt, roles));
}

export function authAddRole(name: string, authFile: string, permissions: TokenPermissions): void {
  if (name === '') throw new CliError(EXIT.USAGE, 'a role needs a name');
  changeAuthFile(authFile, (file) => {
    addRole(file, name);
    file.roles![name] = grantsFrom(permissions);
  });
}
