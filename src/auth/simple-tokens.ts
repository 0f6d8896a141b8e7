/**
 * etcd "simple" tokens: what Authenticate hands out for a user name and password. Random, held in
 * memory only (a restart ends them all, as in etcd), each valid for `ttlMs` after its last use
 * (etcd's --auth-token-ttl, 300 s). Kept by their SHA-256, so the map never holds a usable token.
 */
import { createHash, randomBytes } from 'node:crypto';

export const DEFAULT_ETCD_TOKEN_TTL_MS = 300_000;

const digest = (token: string): string => createHash('sha256').update(token, 'utf8').digest('base64');

export class SimpleTokens {
  private readonly tokens = new Map<string, { user: string; expires: number }>();
  private issued = 0;

  constructor(readonly ttlMs = DEFAULT_ETCD_TOKEN_TTL_MS) {}

  /** A new token for `user`. */
  issue(user: string): string {
    const now = Date.now();
    // Expired tokens are dropped now and then, so the map stays as large as the live tokens.
    if (++this.issued % 256 === 0) for (const [k, t] of this.tokens) if (t.expires <= now) this.tokens.delete(k);
    const token = `${randomBytes(24).toString('base64url')}.${this.issued}`;
    this.tokens.set(digest(token), { user, expires: now + this.ttlMs });
    return token;
  }

  /** The user a live token stands for (its lifetime starts again), or undefined. */
  userOf(token: string): string | undefined {
    const key = digest(token);
    const t = this.tokens.get(key);
    if (!t) return undefined;
    const now = Date.now();
    if (t.expires <= now) {
      this.tokens.delete(key);
      return undefined;
    }
    t.expires = now + this.ttlMs;
    return t.user;
  }

  /** Ends every token of `user` (deleted, or a new password). */
  revokeUser(user: string): void {
    for (const [k, t] of this.tokens) if (t.user === user) this.tokens.delete(k);
  }
}
