/**
 * A hybrid logical clock (Kulkarni et al.): stamps follow the wall clock, never go backwards (also
 * across restarts: the store starts it from its newest stamp), and move past every stamp received,
 * so a write made after seeing another always wins over it. A received stamp further ahead of the
 * wall clock than `maxSkewMs` moves the clock only that far: a peer with a clock far ahead cannot
 * drag this site's stamps with it.
 */
import { hlcMs, hlcOf, LOGICAL_BITS } from './stamp.js';

/** How far ahead of this site's wall clock a stamp may be before it is clamped (docs/sync.md). */
export const DEFAULT_MAX_SKEW_MS = 60_000;

export class HybridClock {
  private last = 0;

  constructor(
    readonly maxSkewMs = DEFAULT_MAX_SKEW_MS,
    private readonly wall: () => number = Date.now,
  ) {}

  /** A stamp larger than every stamp given or observed so far. */
  tick(): number {
    const now = hlcOf(this.wall());
    this.last = now > this.last ? now : this.last + 1;
    return this.last;
  }

  /** The largest stamp this site accepts as it is: anything later is clamped to it. */
  limit(): number {
    return hlcOf(this.wall() + this.maxSkewMs) + (LOGICAL_BITS - 1);
  }

  /** Moves the clock past a stamp received from another site (clamped to `limit()`). */
  observe(hlc: number): void {
    const bounded = Math.min(hlc, this.limit());
    if (bounded > this.last) this.last = bounded;
  }

  /** Wall-clock ms of the latest stamp. */
  get lastMs(): number {
    return hlcMs(this.last);
  }
}
