/**
 * Eq / NotEq over a stream of values. Values are hashed (SHA-256) as they arrive so that
 * comparing many large blobs never holds more than one in memory.
 */
import { createHash } from 'node:crypto';

export type EqualityMode = 'eq' | 'not-eq';

export class EqualityCheck {
  private first: string | undefined;
  private readonly seen = new Set<string>();

  constructor(private readonly mode: EqualityMode) {}

  /** Adds a value; answers the final result as soon as it is known, else undefined. */
  add(value: string | Uint8Array): boolean | undefined {
    const digest = createHash('sha256').update(value).digest('base64');
    if (this.mode === 'eq') {
      if (this.first === undefined) this.first = digest;
      else if (this.first !== digest) return false;
      return undefined;
    }
    if (this.seen.has(digest)) return false;
    this.seen.add(digest);
    return undefined;
  }

  /** The answer once every value has been added (true for none at all). */
  finish(): boolean {
    return true;
  }
}
