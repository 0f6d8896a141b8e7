/**
 * Slots an emptied queue keeps for reuse. Emptying by `length = 0` is a runtime call per emptying
 * (a queue that goes 1 → 0 per message pays it per message), so the array is reused in place up
 * to this size and only a larger one is let go.
 */
const KEPT_SLOTS = 1024;

/** A FIFO that reuses its array: taken slots are cleared, the array is reused once empty. */
export class Queue<T> {
  private items: (T | undefined)[] = [];
  private head = 0;
  private tail = 0;

  get size(): number {
    return this.tail - this.head;
  }

  push(item: T): void {
    if (this.tail < this.items.length) this.items[this.tail] = item;
    else this.items.push(item);
    this.tail++;
  }

  /** The oldest item (undefined when empty). */
  shift(): T | undefined {
    if (this.head === this.tail) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.tail) this.reset();
    return item;
  }

  clear(): void {
    this.items.fill(undefined, this.head, this.tail);
    this.reset();
  }

  private reset(): void {
    this.head = 0;
    this.tail = 0;
    if (this.items.length > KEPT_SLOTS) this.items = [];
  }
}
