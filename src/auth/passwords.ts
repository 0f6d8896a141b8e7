/**
 * Passwords of etcd users (auth-file.ts `users`): stored as scrypt hashes with a random salt, never
 * in plain; checked with a bounded number of scrypt computations at once, since Authenticate needs
 * no credentials and each check costs ~16 MiB and tens of milliseconds on purpose.
 */
import { randomBytes, scrypt as scryptCallback, timingSafeEqual } from 'node:crypto';
import { resourceExhausted } from '../errors.js';

/** How a password is stored: scrypt parameters, salt and hash (base64). */
export interface PasswordHash {
  N: number;
  r: number;
  p: number;
  salt: string;
  hash: string;
}

const KEY_BYTES = 32;
/** scrypt cost: 2^14 × 8 × 128 bytes = 16 MiB of memory, ~50 ms of CPU per check. */
const COST = { N: 1 << 14, r: 8, p: 1 } as const;

function derive(password: string, salt: Buffer, cost: { N: number; r: number; p: number }, bytes = KEY_BYTES) {
  return new Promise<Buffer>((resolve, reject) => {
    scryptCallback(password, salt, bytes, { ...cost, maxmem: 128 * cost.N * cost.r * 2 }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

export async function hashPassword(password: string): Promise<PasswordHash> {
  const salt = randomBytes(16);
  const hash = await derive(password, salt, COST);
  return { ...COST, salt: salt.toString('base64'), hash: hash.toString('base64') };
}

/** A problem with a stored hash read from a file, or undefined. */
export function invalidPasswordHash(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null) return '"scrypt" must be { N, r, p, salt, hash }';
  const v = value as Record<string, unknown>;
  for (const k of ['N', 'r', 'p'] as const) {
    if (!Number.isSafeInteger(v[k]) || (v[k] as number) < 1) return `"scrypt.${k}" must be a positive integer`;
  }
  if ((v.N as number) & ((v.N as number) - 1) || (v.N as number) > 1 << 20) return '"scrypt.N" must be a power of 2';
  if ((v.r as number) > 32 || (v.p as number) > 16) return '"scrypt" cost is too high';
  for (const k of ['salt', 'hash'] as const) {
    if (typeof v[k] !== 'string' || Buffer.from(v[k] as string, 'base64').length < 16)
      return `"scrypt.${k}" must be base64 of at least 16 bytes`;
  }
  return undefined;
}

/** A hash nobody's password matches: checked for unknown users so that they take as long as known ones. */
const DECOY: PasswordHash = {
  ...COST,
  salt: randomBytes(16).toString('base64'),
  hash: randomBytes(32).toString('base64'),
};

/**
 * Password checks, at most `concurrency` at once and `queue` waiting; past that a check is refused
 * at once with RESOURCE_EXHAUSTED (etcd's "too many requests"), so a flood of Authenticate calls
 * costs bounded memory and CPU and other calls go on being served.
 */
export class PasswordGate {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(
    readonly concurrency = 2,
    readonly queue = 16,
  ) {}

  /** Whether `password` matches `stored` (undefined: an unknown user, which never matches). */
  async check(password: string, stored: PasswordHash | undefined): Promise<boolean> {
    if (this.running >= this.concurrency) {
      if (this.waiting.length >= this.queue) throw resourceExhausted('etcdserver: too many requests');
      await new Promise<void>((resolve) => this.waiting.push(resolve));
    } else this.running++;
    try {
      const h = stored ?? DECOY;
      const expected = Buffer.from(h.hash, 'base64');
      const key = await derive(password, Buffer.from(h.salt, 'base64'), h, expected.length);
      return stored !== undefined && timingSafeEqual(key, expected);
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}
