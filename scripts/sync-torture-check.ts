/**
 * The sync torture's checks (./sync-torture.ts): the converged content against the history of
 * writes, and transaction pairs (`t/N/a`, `t/N/b`, always written together) seen whole.
 */
import type { StoreDump } from '../test/helpers/dump.js';
import type { Outcome, Site } from './sync-torture-sites.js';

/** Writes this far apart (answer → next send) are ordered by their clocks on one machine. */
export const SPACING_MS = 1000;

export interface WriteRec {
  key: string;
  /** null: a delete. */
  value: string | null;
  site: string;
  sentAt: number;
  doneAt: number;
  outcome: Outcome | 'uncertain' | 'pending';
}

/** Pairs of one read (`t/N/a`, `t/N/b`) that are not equal: a transaction seen in part. */
export function pairMismatches(kvs: [key: string, value: string][]): string[] {
  const pairs = new Map<string, { a?: string; b?: string }>();
  for (const [k, v] of kvs) {
    const m = /^(t\/\d+)\/([ab])$/.exec(k);
    if (!m) continue;
    const p = pairs.get(m[1]!) ?? {};
    p[m[2] as 'a' | 'b'] = v;
    pairs.set(m[1]!, p);
  }
  return [...pairs].filter(([, p]) => p.a !== p.b).map(([n, p]) => `${n}: a=${p.a ?? 'absent'} b=${p.b ?? 'absent'}`);
}

export function describeDiff(dumps: StoreDump[], sites: Site[]): string {
  const maps = dumps.map((d) => new Map(d.kv));
  const keys = new Set(dumps.flatMap((d) => d.kv.map(([k]) => k)));
  const differing = [...keys].filter((k) => new Set(maps.map((m) => m.get(k))).size > 1);
  const show = differing.slice(0, 5).map((k) => {
    const vals = maps.map((m, i) => `${sites[i]!.name}=${decode(m.get(k)) ?? 'absent'}`);
    return `${decode(k)}: ${vals.join(' ')}`;
  });
  return `${differing.length} keys differ (${dumps.map((d, i) => `${sites[i]!.name} ${d.kv.length} keys`).join(', ')}); ${show.join('; ')}`;
}

const decode = (b64: string | undefined): string | undefined =>
  b64 === undefined ? undefined : Buffer.from(b64, 'base64').toString('utf8');

const show = (r: WriteRec, t0: number): string =>
  `${r.value ?? 'DELETE'} (${r.outcome}, sent ${((r.sentAt - t0) / 1000).toFixed(3)} s, answered ${((r.doneAt - t0) / 1000).toFixed(3)} s)`;

/** Checks the converged content against the write history; returns the keys checked. */
export function checkFinal(final: StoreDump, history: Map<string, WriteRec[]>, violations: string[]): number {
  const content = new Map(final.kv.map(([k, v]) => [decode(k)!, decode(v)!]));
  for (const key of content.keys()) if (!history.has(key)) violations.push(`key ${key} holds a value nobody wrote`);
  const t0 = Math.min(...[...history.values()].map((l) => l[0]!.sentAt));
  for (const [key, all] of history) {
    const recs = all.filter((r) => r.outcome !== 'noop');
    const got = content.get(key) ?? null;
    const fail = (why: string): void => {
      violations.push(
        `key ${key} holds ${got ?? 'nothing'}: ${why}; last writes: ${recs
          .slice(-4)
          .map((r) => show(r, t0))
          .join(' | ')}`,
      );
    };
    if (key.startsWith('o/') || key.startsWith('s/') || key.startsWith('b/')) {
      // One write at a time: the last acknowledged, or an uncertain one after it.
      let last = -1;
      for (let i = 0; i < recs.length; i++) if (recs[i]!.outcome === 'acked') last = i;
      const allowed = new Set<string | null>(last >= 0 ? [recs[last]!.value] : [null]);
      for (let i = last + 1; i < recs.length; i++) allowed.add(recs[i]!.value);
      if (!allowed.has(got)) fail('expected the last acknowledged write (or an uncertain later one)');
      continue;
    }
    // Any write: a value somebody wrote that no acknowledged write clearly later should have beaten.
    const candidates = recs.filter((r) => r.value === got);
    const beaten = (c: { doneAt: number }): boolean =>
      recs.some((x) => x.outcome === 'acked' && x.sentAt > c.doneAt + SPACING_MS);
    const neverWritten = got === null ? [{ doneAt: -Infinity }] : [];
    if (candidates.length === 0 && neverWritten.length === 0) fail('a value nobody wrote');
    else if ([...candidates, ...neverWritten].every(beaten)) {
      fail(`an acknowledged write made > ${SPACING_MS} ms later should have won`);
    }
  }
  for (const m of pairMismatches([...content]))
    violations.push(`transaction pair split in the converged content: ${m}`);
  return history.size;
}
