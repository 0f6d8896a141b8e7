/**
 * The auth file (`buffdb run --auth-file FILE`): JSON holding tokens — only their SHA-256, never
 * the token itself — and client-certificate subjects, each with grants and/or roles
 * (permissions.ts). `buffdb auth add-token` writes it; the server reads it at start and on SIGHUP.
 *
 * {
 *   "version": 1,
 *   "roles": { "app-reader": [{ "service": "kv", "read": true, "prefix": "app/" }] },
 *   "tokens": [{ "name": "ci", "sha256": "…64 hex…", "grants": [{ "service": "blob", "read": true }], "roles": ["app-reader"] }],
 *   "subjects": [{ "name": "edge-1", "subject": { "CN": "edge-1", "O": "Acme" }, "grants": [{ "service": "kv", "write": true }] }]
 * }
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { type Grant, invalidGrant, type Principal } from './permissions.js';

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

export interface AuthFile {
  version: 1;
  roles?: Record<string, Grant[]>;
  tokens: TokenEntry[];
  subjects?: SubjectEntry[];
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

  constructor(file: AuthFile) {
    const grantsOf = (e: { grants?: Grant[]; roles?: string[] }): Grant[] => [
      ...(e.grants ?? []),
      ...(e.roles ?? []).flatMap((r) => file.roles?.[r] ?? []),
    ];
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
}

/** Adds a token named `name` with `grants` to the auth file (created if missing); answers the token. */
export function addToken(path: string, name: string, grants: Grant[]): string {
  let file: AuthFile;
  try {
    file = readAuthFile(path);
  } catch (err) {
    if (!/no such file$/.test((err as Error).message)) throw err;
    file = { version: 1, tokens: [] };
  }
  if (file.tokens.some((t) => t.name === name)) {
    throw new Error(`auth file ${path} already has a token named ${JSON.stringify(name)}; choose another name`);
  }
  const token = newToken();
  file.tokens.push({ name, sha256: hashToken(token).toString('hex'), grants, created: new Date().toISOString() });
  writeAuthFile(path, file);
  return token;
}

/** The auth file as the server uses it: read at start (errors are one line), and again on reload(). */
export class AuthFileSource {
  authenticator: Authenticator;

  constructor(readonly path: string) {
    this.authenticator = new Authenticator(readAuthFile(path));
  }

  /** Reads the file again; on an error the previous version stays in force. */
  reload(): void {
    this.authenticator = new Authenticator(readAuthFile(this.path));
  }
}
