/** Parsers for the etcd-related `buffdb run` flags (loaded by the argument parser; no imports). */

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** A duration such as `90s`, `30m`, `1h30m` or `7d`, in milliseconds; undefined when not one. */
export function parseDuration(value: string): number | undefined {
  const text = value.trim();
  if (!/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(text)) return undefined;
  let ms = 0;
  for (const [, n, , unit] of text.matchAll(/(\d+(\.\d+)?)(ms|s|m|h|d)/g)) ms += Number(n) * UNIT_MS[unit!]!;
  return ms;
}

export type AutoCompactSetting = { revisions: number } | { ageMs: number } | false;

/**
 * `--auto-compact`: `off`, a number of revisions to keep (`100000`), or how long to keep history
 * (`1h`, `30m`, `7d`). Throws an Error with the sentence for the usage message.
 */
export function parseAutoCompact(value: string): AutoCompactSetting {
  const text = value.trim().toLowerCase();
  if (text === 'off') return false;
  if (/^\d+$/.test(text)) {
    const revisions = Number(text);
    if (!Number.isSafeInteger(revisions) || revisions < 1) throw new Error('keep at least 1 revision, or say off');
    return { revisions };
  }
  const ageMs = parseDuration(text);
  if (ageMs === undefined || ageMs <= 0) {
    throw new Error('expected a number of revisions (100000), a duration (1h, 30m, 7d) or off');
  }
  return { ageMs };
}
