/**
 * The auth file (`buffdb run --auth-file FILE`): JSON holding tokens — only their SHA-256, never
 * the token itself — client-certificate subjects and etcd users — only a scrypt hash of their
 * password — each with grants and/or roles (permissions.ts). `buffdb auth add-token`/`add-user`
 * and the etcd Auth service write it; the server reads it at start and on SIGHUP.
 *
 * {
 *   "version": 1,
 *   "roles": { "app-reader": [{ "service": "kv", "read": true, "prefix": "app/" }] },
 *   "tokens": [{ "name": "ci", "sha256": "…64 hex…", "grants": [{ "service": "blob", "read": true }], "roles": ["app-reader"] }],
 *   "subjects": [{ "name": "edge-1", "subject": { "CN": "edge-1", "O": "Acme" }, "grants": [{ "service": "kv", "write": true }] }],
 *   "users": [{ "name": "alice", "scrypt": { "N": 16384, "r": 8, "p": 1, "salt": "…", "hash": "…" }, "roles": ["app-reader"] }]
 * }
 *
 * The role "root" (etcd's) gives every right on every service, whatever grants it lists.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { invalidPasswordHash, PasswordGate, type PasswordHash } from './passwords.js';
import { type Grant, invalidGrant, type Principal, ROOT_GRANTS, ROOT_ROLE } from './permissions.js';
import { SimpleTokens } from './simple-tokens.js';

export interface TokenEntry {
  name: string;
  /** Hex SHA-256 of the token. */
  sha256: string;
  grants?: Grant[];
  roles?: string[];
  created?: string;
}

export interface SubjectEntry {
  name: string;
  /** Fields of the certificate's subject that must all match (e.g. { "CN": "edge-1" }). */
  subject: Record<string, string>;
  grants?: Grant[];
  roles?: string[];
}

/** An etcd user (etcdserverpb.Auth): signs in with Authenticate, gets the grants of its roles. */
export interface UserEntry {
  name: string;
  /** Absent: a user without a password (etcd's no_password), who cannot sign in with one. */
  scrypt?: PasswordHash;
  roles?: string[];
}

export interface AuthFile {
  version: 1;
  roles?: Record<string, Grant[]>;
  tokens: TokenEntry[];
  subjects?: SubjectEntry[];
  users?: UserEntry[];
}

/** A new token: 32 random bytes, URL-safe base64, with a prefix that makes it recognisable in a leak scan. */
export function newToken(): string {
  return `bdb_${randomBytes(32).toString('base64url')}`;
}

export function hashToken(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

function fail(path: string, message: string): never {
  throw new Error(`auth file ${path}: ${message}`);
}

function checkGrants(path: string, where: string, grants: unknown): void {
  if (grants === undefined) return;
  if (!Array.isArray(grants)) fail(path, `${where}: "grants" must be a list`);
  for (const g of grants) {
    const problem = invalidGrant(g);
    if (problem) fail(path, `${where}: ${problem}`);
  }
}

/** Parses and checks an auth file; every problem is one line naming the file and the entry. */
export function parseAuthFile(text: string, path: string): AuthFile {
  let data: AuthFile;
  try {
    data = JSON.parse(text) as AuthFile;
  } catch (err) {
    fail(path, `not valid JSON (${(err as Error).message})`);
  }
  if (typeof data !== 'object' || data === null || data.version !== 1) fail(path, 'expected { "version": 1, … }');
  if (!Array.isArray(data.tokens)) fail(path, '"tokens" must be a list');
  const roles = data.roles ?? {};
  for (const [name, grants] of Object.entries(roles)) checkGrants(path, `role ${JSON.stringify(name)}`, grants);
  const checkRoles = (where: string, list: unknown): void => {
    if (list === undefined) return;
    if (!Array.isArray(list)) fail(path, `${where}: "roles" must be a list`);
    for (const r of list) if (!(String(r) in roles)) fail(path, `${where}: unknown role ${JSON.stringify(r)}`);
  };
  const names = new Set<string>();
  for (const t of data.tokens) {
    const where = `token ${JSON.stringify(t?.name)}`;
    if (typeof t?.name !== 'string' || t.name === '') fail(path, 'every token needs a "name"');
    if (names.has(t.name)) fail(path, `two tokens are named ${JSON.stringify(t.name)}`);
    names.add(t.name);
    if (typeof t.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(t.sha256))
      fail(path, `${where}: "sha256" must be 64 hex digits`);
    checkGrants(path, where, t.grants);
    checkRoles(where, t.roles);
  }
  for (const s of data.subjects ?? []) {
    const where = `subject ${JSON.stringify(s?.name)}`;
    if (typeof s?.name !== 'string') fail(path, 'every subject needs a "name"');
    const fields = s.subject;
    if (typeof fields !== 'object' || fields === null || Object.keys(fields).length === 0) {
      fail(path, `${where}: "subject" must name certificate subject fields, such as { "CN": "client-1" }`);
    }
    for (const v of Object.values(fields))
      if (typeof v !== 'string') fail(path, `${where}: subject values must be strings`);
    checkGrants(path, where, s.grants);
    checkRoles(where, s.roles);
  }
  if (data.users !== undefined && !Array.isArray(data.users)) fail(path, '"users" must be a list');
  const users = new Set<string>();
  for (const u of data.users ?? []) {
    const where = `user ${JSON.stringify(u?.name)}`;
    if (typeof u?.name !== 'string' || u.name === '') fail(path, 'every user needs a "name"');
    if (users.has(u.name)) fail(path, `two users are named ${JSON.stringify(u.name)}`);
    users.add(u.name);
    const problem = u.scrypt === undefined ? undefined : invalidPasswordHash(u.scrypt);
    if (problem) fail(path, `${where}: ${problem}`);
    checkRoles(where, u.roles);
  }
  return data;
}

export function readAuthFile(path: string): AuthFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    fail(path, e.code === 'ENOENT' ? 'no such file' : e.code === 'EACCES' ? 'permission denied' : e.message);
  }
  return parseAuthFile(text, path);
}

/** Who a token or certificate is, from one version of the auth file. */
export class Authenticator {
  private readonly tokens: { hash: Buffer; principal: Principal }[];
  private readonly subjects: { subject: Record<string, string>; principal: Principal }[];
  private readonly users = new Map<string, { entry: UserEntry; principal: Principal }>();

  constructor(readonly file: AuthFile) {
    const grantsOf = (e: { grants?: Grant[]; roles?: string[] }): Grant[] => [
      ...(e.grants ?? []),
      ...(e.roles ?? []).flatMap((r) => (r === ROOT_ROLE ? ROOT_GRANTS : (file.roles?.[r] ?? []))),
    ];
    for (const u of file.users ?? []) {
      const principal: Principal = { name: u.name, kind: 'user', grants: grantsOf(u), roles: u.roles ?? [] };
      this.users.set(u.name, { entry: u, principal });
    }
    this.tokens = file.tokens.map((t) => ({
      hash: Buffer.from(t.sha256, 'hex'),
      principal: { name: t.name, kind: 'token', grants: grantsOf(t) },
    }));
    this.subjects = (file.subjects ?? []).map((s) => ({
      subject: s.subject,
      principal: { name: s.name, kind: 'certificate', grants: grantsOf(s) },
    }));
  }

  /** The token's principal, or undefined. Every stored hash is compared, in constant time. */
  byToken(token: string): Principal | undefined {
    const hash = hashToken(token);
    let found: Principal | undefined;
    for (const t of this.tokens) if (timingSafeEqual(t.hash, hash)) found = t.principal;
    return found;
  }

  /** The etcd user named `name`: its entry (password hash) and principal. */
  byUser(name: string): { entry: UserEntry; principal: Principal } | undefined {
    return this.users.get(name);
  }

  /** The first subjects entry whose fields all equal the certificate subject's. */
  bySubject(subject: Record<string, string | string[] | undefined>): Principal | undefined {
    return this.subjects.find((s) => Object.entries(s.subject).every(([k, v]) => [subject[k]].flat().includes(v)))
      ?.principal;
  }
}

/** Writes `file` to `path` atomically (temp file, fsync, rename), readable by its owner only. */
export function writeAuthFile(path: string, file: AuthFile): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, `${JSON.stringify(file, null, 2)}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  // The rename itself is made durable too: the new file survives a power cut, not only kill -9.
  const dir = openSync(dirname(path), 'r');
  try {
    fsyncSync(dir);
  } finally {
    closeSync(dir);
  }
}

/** The auth file at `path`, or a new empty one when there is no file yet. */
export function readOrNewAuthFile(path: string): AuthFile {
  try {
    return readAuthFile(path);
  } catch (err) {
    if (!/no such file$/.test((err as Error).message)) throw err;
    return { version: 1, tokens: [] };
  }
}

/** Adds a token named `name` with `grants` to the auth file (created if missing); answers the token. */
export function addToken(path: string, name: string, grants: Grant[]): string {
  const file = readOrNewAuthFile(path);
  if (file.tokens.some((t) => t.name === name)) {
    throw new Error(`auth file ${path} already has a token named ${JSON.stringify(name)}; choose another name`);
  }
  const token = newToken();
  file.tokens.push({ name, sha256: hashToken(token).toString('hex'), grants, created: new Date().toISOString() });
  writeAuthFile(path, file);
  return token;
}

/**
 * The auth file as the server uses it: read at start (errors are one line), again on reload(), and
 * changed by the etcd Auth service (update()); with the etcd users' tokens and password checks.
 */
export class AuthFileSource {
  authenticator: Authenticator;
  readonly tokens: SimpleTokens;
  readonly passwords = new PasswordGate();
  /** etcd's auth revision: one more for every change made through update(). */
  revision = 1;

  constructor(
    readonly path: string,
    options: { tokenTtlMs?: number } = {},
  ) {
    this.authenticator = new Authenticator(readAuthFile(path));
    this.tokens = new SimpleTokens(options.tokenTtlMs);
  }

  /** Reads the file again; on an error the previous version stays in force. */
  reload(): void {
    this.authenticator = new Authenticator(readAuthFile(this.path));
  }

  /**
   * Applies `change` to the file as it is on disk now (so edits made meanwhile, by hand or with the
   * CLI, are kept), checks the result, writes it atomically and puts it in force.
   */
  update<T>(change: (file: AuthFile) => T): T {
    const file = readAuthFile(this.path);
    const result = change(file);
    const checked = parseAuthFile(JSON.stringify(file), this.path);
    writeAuthFile(this.path, checked);
    this.authenticator = new Authenticator(checked);
    this.revision++;
    return result;
  }
}
