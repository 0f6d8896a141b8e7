/** Waiting for things that arrive (watch events, stream responses) without fixed sleeps. */

export class Inbox<T> {
  readonly items: T[] = [];
  private waiters: (() => void)[] = [];
  ended: Error | undefined;

  push = (item: T): void => {
    this.items.push(item);
    this.wake();
  };

  /** No more items will come (the stream ended or failed). */
  end = (err?: Error): void => {
    this.ended = err ?? new Error('ended');
    this.wake();
  };

  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }

  /** Resolves once `ready(items)` holds; rejects after `timeoutMs` or when the inbox ends first. */
  async until(ready: (items: T[]) => boolean, what: string, timeoutMs = 10_000): Promise<T[]> {
    const deadline = Date.now() + timeoutMs;
    while (!ready(this.items)) {
      if (this.ended) throw new Error(`ended (${this.ended.message}) before ${what}; got ${this.items.length} items`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; got ${this.items.length} items`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
    return this.items;
  }

  /** Resolves with the items once there are at least `n`. */
  count(n: number, what = `${n} items`, timeoutMs?: number): Promise<T[]> {
    return this.until((items) => items.length >= n, what, timeoutMs);
  }
}
