/**
 * The server process's young-generation cap (`--young-heap`). V8 doubles its new space (the young
 * generation: two semi-spaces) under sustained allocation, up to 32 MiB on 64-bit, and keeps it.
 * Only the start-up flag `--max-semi-space-size` lowers that maximum, and a running process cannot
 * give itself a start-up flag (Node 20 has no `execve`). What V8 does read at run time is the growth
 * factor, at every doubling; held at 1 while one more doubling would pass the cap, the new space
 * stops growing there. It is checked after each collection (a `gc` performance entry) and written
 * only when it changes: V8 may shrink the new space itself when the process allocates little, and
 * it must then be free to grow back up to the cap. A collection is reported an event-loop turn
 * after it, so one task that allocates enough for two doublings could still pass the cap (under the
 * bench's floods it held in every sample). docs/performance.md ("Young generation") has the
 * measurements behind the default. Process-wide, so only `buffdb run` sets it, never the library.
 */
import { PerformanceObserver } from 'node:perf_hooks';
import { getHeapSpaceStatistics, setFlagsFromString } from 'node:v8';

const MiB = 1024 * 1024;
/** V8's own growth factor (`--semi-space-growth-factor`'s default). */
const V8_GROWTH_FACTOR = 2;

/** The committed size of V8's new space, both semi-spaces, in bytes. */
export function newSpaceBytes(): number {
  return getHeapSpaceStatistics().find((s) => s.space_name === 'new_space')?.space_size ?? 0;
}

/**
 * Holds V8's new space at `capMiB` or below from now on (0: V8's own rule; nothing is set). It
 * cannot shrink what is already committed: a cap under the size start-up left (16 MiB) holds the
 * new space there until V8 shrinks it, and at the cap from then on.
 */
export function capYoungGeneration(capMiB: number): void {
  if (capMiB <= 0) return;
  const cap = capMiB * MiB;
  let factor = V8_GROWTH_FACTOR;
  const check = (): void => {
    const wanted = newSpaceBytes() * V8_GROWTH_FACTOR > cap ? 1 : V8_GROWTH_FACTOR;
    if (wanted === factor) return;
    factor = wanted;
    setFlagsFromString(`--semi-space-growth-factor=${factor}`);
  };
  check();
  new PerformanceObserver(check).observe({ entryTypes: ['gc'] });
}
