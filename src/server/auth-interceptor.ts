/**
 * Authentication and permissions, checked in a grpc-js server interceptor before any handler —
 * and so before the store — sees a call: the caller's token (`authorization: Bearer TOKEN`), an
 * etcd user's token from Authenticate (`token: TOKEN`, as etcd clients send it) or, with mutual
 * TLS, its certificate subject names a principal; the method's rule says which right
 * on which service the call needs. Keys travel in messages, so for a principal whose kv rights are
 * limited to prefixes or ranges each message is checked as it arrives; a message that is not
 * allowed reaches the handler as a refusal, answered in order like a malformed message (the
 * answers before it stay valid, nothing after it is applied).
 *
 * Rules (docs/operating.md): reads are Get, Eq, NotEq, EqData, NotEqData, Download and Query;
 * writes are Set, Delete, Store, Update, Upload, UploadStatus and Execute — a Query whose SQL writes
 * needs query write. Begin/Commit/RollbackTransaction need kv or blob read; the operations inside a
 * transaction are checked like any other. Backup needs admin. Health needs no token; reflection
 * needs a valid token. The etcd services' rules are in etcd/auth-rules.ts. A method with no rule
 * is refused (new services must add theirs here).
 */
import {
  Metadata,
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerMethodDefinition,
  status,
} from '@grpc/grpc-js';
import type { Authenticator } from '../auth/auth-file.js';
import { allows, denial, holdsAny, type Need, type Principal, type Right, type Service } from '../auth/permissions.js';
import type { SimpleTokens } from '../auth/simple-tokens.js';
import { DecodeFailure } from './codec.js';
import {
  ETCD_PERMISSION_DENIED,
  ETCD_RULES,
  type EtcdAuthHooks,
  type EtcdRule,
  etcdCallDenied,
} from './etcd/auth-rules.js';

/** Whether a raw SQL statement only reads (for Query with query read but not query write). */
export type SqlReadOnlyCheck = (sql: string, target: number) => Promise<boolean>;

type Rule =
  | { kind: 'open' }
  | { kind: 'authenticated' }
  | { kind: 'transaction' }
  | { kind: 'need'; service: Service; right: Right; keyOf?: (message: { key?: unknown }) => unknown }
  | { kind: 'query' }
  | { kind: 'etcd'; rule: EtcdRule };

const key = (m: { key?: unknown }): unknown => m.key;
const need = (service: Service, right: Right, keyOf?: (m: { key?: unknown }) => unknown): Rule => ({
  kind: 'need',
  service,
  right,
  keyOf,
});

const RULES: Record<string, Rule> = {
  '/buffdb.kv.Kv/Get': need('kv', 'read', key),
  '/buffdb.kv.Kv/Eq': need('kv', 'read', key),
  '/buffdb.kv.Kv/NotEq': need('kv', 'read', key),
  '/buffdb.kv.Kv/Set': need('kv', 'write', key),
  '/buffdb.kv.Kv/Delete': need('kv', 'write', key),
  '/buffdb.kv.Kv/BeginTransaction': { kind: 'transaction' },
  '/buffdb.kv.Kv/CommitTransaction': { kind: 'transaction' },
  '/buffdb.kv.Kv/RollbackTransaction': { kind: 'transaction' },
  '/buffdb.blob.Blob/Get': need('blob', 'read'),
  '/buffdb.blob.Blob/EqData': need('blob', 'read'),
  '/buffdb.blob.Blob/NotEqData': need('blob', 'read'),
  '/buffdb.blob.Blob/Download': need('blob', 'read'),
  '/buffdb.blob.Blob/Store': need('blob', 'write'),
  '/buffdb.blob.Blob/Update': need('blob', 'write'),
  '/buffdb.blob.Blob/Delete': need('blob', 'write'),
  '/buffdb.blob.Blob/Upload': need('blob', 'write'),
  '/buffdb.blob.Blob/UploadStatus': need('blob', 'write'),
  '/buffdb.query.Query/Query': { kind: 'query' },
  '/buffdb.query.Query/Execute': need('query', 'write'),
  '/buffdb.admin.Admin/Backup': need('admin', 'read'),
  // An edge's link reads and writes the whole store (within its prefixes): the sync right.
  '/buffdb.sync.Sync/Exchange': need('sync', 'write'),
  '/buffdb.sync.Sync/BlobExchange': need('sync', 'write'),
  '/buffdb.sync.Sync/Status': need('sync', 'read'),
  '/buffdb.sync.Sync/Conflicts': need('sync', 'read'),
  '/grpc.health.v1.Health/Check': { kind: 'open' },
  '/grpc.health.v1.Health/Watch': { kind: 'open' },
  '/grpc.health.v1.Health/List': { kind: 'open' },
  '/grpc.reflection.v1.ServerReflection/ServerReflectionInfo': { kind: 'authenticated' },
  '/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo': { kind: 'authenticated' },
};

const ruleFor = (path: string): Rule | undefined => {
  const etcd = ETCD_RULES[path];
  return RULES[path] ?? (etcd && (etcd.call === 'open' ? { kind: 'open' } : { kind: 'etcd', rule: etcd }));
};

/** The auth file as currently loaded (replaced on SIGHUP), and the etcd users' live tokens. */
export interface AuthSource {
  readonly authenticator: Authenticator;
  readonly tokens?: SimpleTokens;
}

type Verdict = { principal: Principal } | { code: number; details: string };

const BEARER = /^Bearer ([\x21-\x7e]+)$/i;

function identify(source: AuthSource, metadata: Metadata, call: ServerInterceptingCallInterface): Verdict {
  const auth = source.authenticator;
  const header = metadata.get('authorization');
  if (header.length > 0) {
    const m = header.length === 1 ? BEARER.exec(String(header[0])) : null;
    if (!m) return { code: status.UNAUTHENTICATED, details: 'the authorization metadata must be "Bearer TOKEN"' };
    const principal = auth.byToken(m[1]!);
    return principal ? { principal } : { code: status.UNAUTHENTICATED, details: 'unknown token' };
  }
  const etcdToken = metadata.get('token');
  if (etcdToken.length > 0) {
    // etcd's answer for an expired or unknown token: etcd clients sign in again when they see it.
    const user = etcdToken.length === 1 ? source.tokens?.userOf(String(etcdToken[0])) : undefined;
    const principal = user === undefined ? undefined : auth.byUser(user)?.principal;
    return principal ? { principal } : { code: status.UNAUTHENTICATED, details: 'etcdserver: invalid auth token' };
  }
  const subject = call.getAuthContext().sslPeerCertificate?.subject as Record<string, string> | undefined;
  const principal = subject ? auth.bySubject(subject) : undefined;
  if (principal) return { principal };
  return {
    code: status.UNAUTHENTICATED,
    details: subject
      ? 'no token, and the client certificate is not in the auth file: send the metadata authorization: Bearer TOKEN'
      : 'this server requires a token: send the metadata authorization: Bearer TOKEN (etcd clients: sign in as a user, e.g. etcdctl --user NAME)',
  };
}

/**
 * The check that applies to each message, or undefined when none is needed (the principal's right
 * covers every key, or the method carries no keys).
 */
function perMessageCheck(
  rule: Rule,
  principal: Principal,
  isReadOnlySql: SqlReadOnlyCheck | undefined,
  hooks: EtcdAuthHooks,
): ((message: unknown) => string | undefined | Promise<string | undefined>) | undefined {
  if (rule.kind === 'etcd') {
    const check = rule.rule.message;
    if (!check) return undefined;
    const verdict = (ok: boolean | undefined) => (ok === false ? ETCD_PERMISSION_DENIED : undefined);
    return (message) => {
      const ok = check(principal, message as never, hooks);
      return ok instanceof Promise ? ok.then(verdict) : verdict(ok);
    };
  }
  if (rule.kind === 'need' && rule.keyOf) {
    const { service, right, keyOf } = rule;
    if (allows(principal, { service, right })) {
      // An unlimited grant covers every key: nothing to check per message.
      if (principal.grants.some((g) => g.service === service && g[right] && !g.prefix && !g.range)) return undefined;
    }
    return (message) => {
      const k = keyOf(message as { key?: unknown });
      if (typeof k !== 'string') return undefined;
      const n: Need = { service, right, key: k };
      return allows(principal, n) ? undefined : denial(principal, n);
    };
  }
  if (rule.kind === 'query' && !allows(principal, { service: 'query', right: 'write' })) {
    return async (message) => {
      const { query, target } = message as { query?: unknown; target?: unknown };
      if (typeof query !== 'string' || !isReadOnlySql) return undefined;
      let readOnly: boolean;
      try {
        readOnly = await isReadOnlySql(query, Number(target));
      } catch {
        return undefined; // the handler refuses it the same way, before doing anything
      }
      return readOnly ? undefined : `${denial(principal, { service: 'query', right: 'write' })} (this SQL writes)`;
    };
  }
  return undefined;
}

/** The call-level decision, before the handler starts. */
function decide(rule: Rule | undefined, path: string, principal: Principal): string | undefined {
  if (!rule) return `permission denied: no permission rule for ${path}`;
  switch (rule.kind) {
    case 'open':
    case 'authenticated':
      return undefined;
    case 'transaction':
      return holdsAny(principal, 'kv', 'read') || holdsAny(principal, 'blob', 'read')
        ? undefined
        : `${denial(principal, { service: 'kv', right: 'read' })} (transactions need kv read or blob read)`;
    case 'query':
      return holdsAny(principal, 'query', 'read') ? undefined : denial(principal, { service: 'query', right: 'read' });
    case 'need':
      return holdsAny(principal, rule.service, rule.right) ? undefined : denial(principal, rule);
    case 'etcd':
      return etcdCallDenied(rule.rule, principal);
  }
}

export function authInterceptor(
  source: AuthSource,
  isReadOnlySql?: SqlReadOnlyCheck,
  etcdHooks: EtcdAuthHooks = {},
): ServerInterceptor {
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    const rule = ruleFor(method.path);
    if (rule?.kind === 'open') return new ServerInterceptingCall(call);
    let check: ReturnType<typeof perMessageCheck>;
    /** Messages are released in arrival order even when a check is asynchronous. */
    let tail: Promise<void> | undefined;
    const refuse = (code: number, details: string): void =>
      call.sendStatus({ code, details, metadata: new Metadata() });
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const verdict = identify(source, metadata, call);
            if ('code' in verdict) return refuse(verdict.code, verdict.details);
            const denied = decide(rule, method.path, verdict.principal);
            if (denied) return refuse(status.PERMISSION_DENIED, denied);
            check = perMessageCheck(rule!, verdict.principal, isReadOnlySql, etcdHooks);
            nextMetadata(metadata);
          },
          onReceiveMessage: (message, nextMessage) => {
            if (!check || message instanceof DecodeFailure) {
              if (tail) tail = tail.then(() => nextMessage(message));
              else nextMessage(message);
              return;
            }
            const release = (problem: string | undefined): void =>
              nextMessage(problem === undefined ? message : new DecodeFailure(problem, status.PERMISSION_DENIED));
            const result = tail ? tail.then(() => check!(message)) : check(message);
            if (result instanceof Promise) tail = result.then(release);
            else release(result);
          },
          onReceiveHalfClose: (nextHalfClose) => {
            if (tail) void tail.then(nextHalfClose);
            else nextHalfClose();
          },
        }),
    });
  };
}
