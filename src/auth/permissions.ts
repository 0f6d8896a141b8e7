/**
 * The permission model: a principal (a token, or a client certificate's subject) holds grants;
 * a grant gives read and/or write on one service, and on kv it may be limited to keys in a
 * range (a prefix is the range [prefix, prefix + 1)). Roles are named lists of grants a principal
 * can refer to.
 *
 * Chosen so etcd's auth model maps onto it without change (issue: etcd Auth service, later): an
 * etcd user is a principal with roles; an etcd role's permission {READ|WRITE|READWRITE, key,
 * range_end} is a kv grant with `range: [key, range_end]` (range_end "" = that key alone, "\0" =
 * every key from `key` on, as in etcd). Keys compare as UTF-8 bytes, as etcd compares them.
 */

import { etcdSpan, type KeySpan, prefixSpan } from '../store/kv/key-span.js';

export const SERVICES = ['kv', 'blob', 'query', 'admin', 'sync'] as const;
export type Service = (typeof SERVICES)[number];
export type Right = 'read' | 'write';

export interface Grant {
  service: Service;
  read?: boolean;
  write?: boolean;
  /** kv only: the grant covers keys starting with this. */
  prefix?: string;
  /** kv only: the grant covers keys in [from, to) — etcd's [key, range_end), see above. */
  range?: [from: string, to: string];
}

export interface Principal {
  /** For messages and logs (never the token). */
  name: string;
  /** `user`: an etcd user, signed in with Authenticate (a user name and password). */
  kind: 'token' | 'certificate' | 'user';
  grants: readonly Grant[];
  /** The roles the grants came from (for etcd's RoleGet of one's own roles). */
  roles?: readonly string[];
}

/** etcd's root role: every right on every service, whatever grants the file lists for it. */
export const ROOT_ROLE = 'root';
export const ROOT_GRANTS: readonly Grant[] = SERVICES.map((service) => ({ service, read: true, write: true }));

/** What one request needs. `key`: the kv key it touches (checked against prefixes and ranges). */
export interface Need {
  service: Service;
  right: Right;
  key?: string;
}

function inRange(key: string, [from, to]: [string, string]): boolean {
  const k = Buffer.from(key, 'utf8');
  if (to === '') return k.equals(Buffer.from(from, 'utf8'));
  if (Buffer.compare(k, Buffer.from(from, 'utf8')) < 0) return false;
  return to === '\0' || Buffer.compare(k, Buffer.from(to, 'utf8')) < 0;
}

function covers(grant: Grant, need: Need): boolean {
  if (grant.service !== need.service || grant[need.right] !== true) return false;
  if (need.key === undefined) return true;
  if (grant.prefix !== undefined && !need.key.startsWith(grant.prefix)) return false;
  if (grant.range !== undefined && !inRange(need.key, grant.range)) return false;
  return true;
}

/** Whether `principal` may do `need`. */
export function allows(principal: Principal, need: Need): boolean {
  return principal.grants.some((g) => covers(g, need));
}

function grantSpan(g: Grant): KeySpan {
  if (g.range) return etcdSpan(Buffer.from(g.range[0], 'utf8'), Buffer.from(g.range[1], 'utf8'));
  return prefixSpan(Buffer.from(g.prefix ?? '', 'utf8'));
}

/**
 * Whether `principal` holds kv `right` on every key of `span` (the union of its grants covers it),
 * comparing keys as bytes, as etcd does: etcd's check of a Range, DeleteRange or Watch.
 */
export function allowsSpan(principal: Principal, right: Right, { start, end }: KeySpan): boolean {
  const spans = principal.grants
    .filter((g) => g.service === 'kv' && g[right] === true)
    .map(grantSpan)
    .sort((a, b) => Buffer.compare(a.start, b.start));
  let covered = start;
  for (const { start: from, end: to } of spans) {
    if (end !== undefined && Buffer.compare(covered, end) >= 0) return true;
    if (Buffer.compare(from, covered) > 0) return false;
    if (to === undefined) return true;
    if (Buffer.compare(to, covered) > 0) covered = to;
  }
  return end !== undefined && Buffer.compare(covered, end) >= 0;
}

/** Whether the principal holds `right` on `service` for at least some keys. */
export function holdsAny(principal: Principal, service: Service, right: Right): boolean {
  return principal.grants.some((g) => g.service === service && g[right] === true);
}

/** "kv write", or "admin" for the admin service (which has one right). */
export function describeNeed(need: Pick<Need, 'service' | 'right'>): string {
  return need.service === 'admin' ? 'admin' : `${need.service} ${need.right}`;
}

/** The PERMISSION_DENIED message: who, which service and the missing right (never the key's value). */
export function denial(principal: Principal, need: Need): string {
  const who = `${principal.kind} ${JSON.stringify(principal.name)}`;
  if (need.key !== undefined && holdsAny(principal, need.service, need.right)) {
    return `permission denied: ${who} has ${describeNeed(need)} only for other keys (${limits(principal, need)})`;
  }
  return `permission denied: ${who} lacks ${describeNeed(need)}`;
}

function limits(principal: Principal, need: Need): string {
  return principal.grants
    .filter((g) => g.service === need.service && g[need.right] === true)
    .map((g) =>
      g.prefix !== undefined
        ? `keys under ${JSON.stringify(g.prefix)}`
        : g.range
          ? `keys in [${JSON.stringify(g.range[0])}, ${JSON.stringify(g.range[1])})`
          : 'all keys',
    )
    .join(', ');
}

/** Checks one grant read from a file; answers an error message or undefined. */
export function invalidGrant(grant: unknown): string | undefined {
  if (typeof grant !== 'object' || grant === null) return 'a grant must be an object';
  const g = grant as Record<string, unknown>;
  if (!SERVICES.includes(g.service as Service)) return `unknown service ${JSON.stringify(g.service)}`;
  for (const k of Object.keys(g)) {
    if (!['service', 'read', 'write', 'prefix', 'range'].includes(k)) return `unknown field ${JSON.stringify(k)}`;
  }
  if (g.read !== undefined && typeof g.read !== 'boolean') return '"read" must be true or false';
  if (g.write !== undefined && typeof g.write !== 'boolean') return '"write" must be true or false';
  if (g.read !== true && g.write !== true) return 'a grant gives "read", "write" or both';
  if ((g.prefix !== undefined || g.range !== undefined) && g.service !== 'kv') return 'only kv grants take keys';
  if (g.prefix !== undefined && typeof g.prefix !== 'string') return '"prefix" must be a string';
  if (
    g.range !== undefined &&
    !(Array.isArray(g.range) && g.range.length === 2 && g.range.every((r) => typeof r === 'string'))
  ) {
    return '"range" must be [from, to]';
  }
  return undefined;
}
