/**
 * etcd's user and role management over the auth file — the same model as tokens (permissions.ts),
 * not a second one: an etcd user is a `users` entry, an etcd role is a `roles` entry, and a role's
 * key permission {READ|WRITE|READWRITE, key, range_end} is the kv grant `range: [key, range_end]`.
 * Each function changes an AuthFile in place or throws etcd's error (its text and gRPC code, which
 * clients match on); the etcd Auth service and `buffdb auth add-user` both use them.
 */
import { failedPrecondition, invalidArgument, StoreError, status } from '../errors.js';
import { prefixEnd } from '../store/kv/key-span.js';
import type { AuthFile, UserEntry } from './auth-file.js';
import type { PasswordHash } from './passwords.js';
import { type Grant, ROOT_ROLE } from './permissions.js';

/** etcd's errors (api/v3rpc/rpctypes/error.go). */
export const etcdAuthError = {
  notEnabled: () => failedPrecondition('etcdserver: authentication is not enabled'),
  authFailed: () => invalidArgument('etcdserver: authentication failed, invalid user ID or password'),
  invalidToken: () => new StoreError(status.UNAUTHENTICATED, 'etcdserver: invalid auth token'),
  permissionDenied: () => new StoreError(status.PERMISSION_DENIED, 'etcdserver: permission denied'),
  invalidMgmt: () => invalidArgument('etcdserver: invalid auth management'),
  rootUserNotExist: () => failedPrecondition('etcdserver: root user does not exist'),
  rootRoleNotExist: () => failedPrecondition('etcdserver: root user does not have root role'),
  userExists: () => failedPrecondition('etcdserver: user name already exists'),
  userEmpty: () => invalidArgument('etcdserver: user name is empty'),
  userNotFound: () => failedPrecondition('etcdserver: user name not found'),
  roleExists: () => failedPrecondition('etcdserver: role name already exists'),
  roleNotFound: () => failedPrecondition('etcdserver: role name not found'),
  roleEmpty: () => invalidArgument('etcdserver: role name is empty'),
  roleNotGranted: () => failedPrecondition('etcdserver: role is not granted to the user'),
  permissionNotGranted: () => failedPrecondition('etcdserver: permission is not granted to the role'),
};

export const ROOT_USER = 'root';

export type PermType = 'READ' | 'WRITE' | 'READWRITE';

/** A role's key permission as etcd shows it: keys are bytes, range_end as in a Range request. */
export interface KeyPermission {
  type: PermType;
  key: Buffer;
  rangeEnd: Buffer;
}

export function findUser(file: AuthFile, name: string): UserEntry {
  const user = file.users?.find((u) => u.name === name);
  if (!user) throw etcdAuthError.userNotFound();
  return user;
}

function roleGrants(file: AuthFile, role: string): Grant[] {
  const grants = file.roles?.[role];
  if (!grants) throw etcdAuthError.roleNotFound();
  return grants;
}

export function addUser(file: AuthFile, name: string, scrypt: PasswordHash | undefined, roles: string[] = []): void {
  if (name === '') throw etcdAuthError.userEmpty();
  if (file.users?.some((u) => u.name === name)) throw etcdAuthError.userExists();
  for (const r of roles) if (r !== ROOT_ROLE) roleGrants(file, r);
  if (roles.includes(ROOT_ROLE)) file.roles = { [ROOT_ROLE]: [], ...file.roles };
  const user: UserEntry = { name, ...(scrypt ? { scrypt } : {}), roles: [...new Set(roles)].sort() };
  file.users = [...(file.users ?? []), user];
}

export function deleteUser(file: AuthFile, name: string): void {
  findUser(file, name);
  // Auth is always on with an auth file: as etcd with auth enabled, root cannot be removed.
  if (name === ROOT_USER) throw etcdAuthError.invalidMgmt();
  file.users = file.users!.filter((u) => u.name !== name);
}

export function changePassword(file: AuthFile, name: string, scrypt: PasswordHash): void {
  findUser(file, name).scrypt = scrypt;
}

export function grantRole(file: AuthFile, name: string, role: string): void {
  const user = findUser(file, name);
  // As etcd: the root role need not have been added first.
  if (role === ROOT_ROLE) file.roles = { [ROOT_ROLE]: [], ...file.roles };
  else roleGrants(file, role);
  user.roles = [...new Set([...(user.roles ?? []), role])].sort();
}

export function revokeRole(file: AuthFile, name: string, role: string): void {
  const user = findUser(file, name);
  if (!user.roles?.includes(role)) throw etcdAuthError.roleNotGranted();
  if (name === ROOT_USER && role === ROOT_ROLE) throw etcdAuthError.invalidMgmt();
  user.roles = user.roles.filter((r) => r !== role);
}

export function addRole(file: AuthFile, role: string): void {
  if (role === '') throw etcdAuthError.roleEmpty();
  if (file.roles?.[role]) throw etcdAuthError.roleExists();
  file.roles = { ...file.roles, [role]: [] };
}

/** Removes the role, and it from every user, token and subject holding it (as etcd does for users). */
export function deleteRole(file: AuthFile, role: string): void {
  roleGrants(file, role);
  if (role === ROOT_ROLE) throw etcdAuthError.invalidMgmt();
  delete file.roles![role];
  for (const e of [...(file.users ?? []), ...file.tokens, ...(file.subjects ?? [])]) {
    if (e.roles?.includes(role)) e.roles = e.roles.filter((r) => r !== role);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The grant's range as strings: the auth file holds keys as text. */
function textRange(key: Buffer, rangeEnd: Buffer): [string, string] {
  try {
    return [utf8.decode(key), utf8.decode(rangeEnd)];
  } catch {
    throw invalidArgument('buffdb keeps permission keys as text: key and range_end must be valid UTF-8');
  }
}

const sameRange = (g: Grant, [from, to]: [string, string]): boolean =>
  g.service === 'kv' && g.prefix === undefined && g.range?.[0] === from && g.range[1] === to;

/** Grants `type` on [key, range_end) to the role; an existing permission on the same range is replaced (etcd). */
export function grantPermission(file: AuthFile, role: string, perm: KeyPermission): void {
  const grants = roleGrants(file, role);
  const range = textRange(perm.key, perm.rangeEnd);
  const grant: Grant = {
    service: 'kv',
    ...(perm.type !== 'WRITE' ? { read: true } : {}),
    ...(perm.type !== 'READ' ? { write: true } : {}),
    range,
  };
  const i = grants.findIndex((g) => sameRange(g, range));
  if (i >= 0) grants[i] = grant;
  else grants.push(grant);
}

export function revokePermission(file: AuthFile, role: string, key: Buffer, rangeEnd: Buffer): void {
  const grants = roleGrants(file, role);
  const range = textRange(key, rangeEnd);
  const i = grants.findIndex((g) => sameRange(g, range));
  if (i < 0) throw etcdAuthError.permissionNotGranted();
  grants.splice(i, 1);
}

/** The role's kv grants as etcd permissions (grants on other services have no etcd form). */
export function rolePermissions(file: AuthFile, role: string): KeyPermission[] {
  const everything = Buffer.of(0);
  return roleGrants(file, role)
    .filter((g) => g.service === 'kv')
    .map((g) => {
      const type: PermType = g.read && g.write ? 'READWRITE' : g.write ? 'WRITE' : 'READ';
      if (g.range) return { type, key: Buffer.from(g.range[0]), rangeEnd: Buffer.from(g.range[1]) };
      if (!g.prefix) return { type, key: everything, rangeEnd: everything };
      const key = Buffer.from(g.prefix);
      return { type, key, rangeEnd: prefixEnd(key) ?? everything };
    });
}

/** etcd's AuthEnable check: a user root holding the role root. */
export function checkRootUser(file: AuthFile): void {
  const root = file.users?.find((u) => u.name === ROOT_USER);
  if (!root) throw etcdAuthError.rootUserNotExist();
  if (!root.roles?.includes(ROOT_ROLE)) throw etcdAuthError.rootRoleNotExist();
}
