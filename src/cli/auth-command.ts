/** `buffdb auth add-token NAME --auth-file FILE [permissions…]`: adds a token, prints it once. */
import { addToken } from '../auth/auth-file.js';
import type { Grant } from '../auth/permissions.js';
import { writeOutput } from './binary-io.js';
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
  return grants;
}

export async function authAddToken(name: string, authFile: string, permissions: TokenPermissions): Promise<void> {
  const grants = grantsFrom(permissions);
  if (grants.length === 0) {
    throw new CliError(
      EXIT.USAGE,
      'a token needs at least one permission: --kv-read, --kv-write, --blob-read, --blob-write, --query-read, --query-write or --admin',
    );
  }
  const token = addToken(authFile, name, grants);
  await writeOutput(Buffer.from(`${token}\n`));
}
