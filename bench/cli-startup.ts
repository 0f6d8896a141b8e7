/**
 * Start-up cost of the CLI: wall time of `buffdb kv get KEY` against `node -e 0`, run alternately
 * (so machine noise hits both alike) in a temp directory holding a real store. Used by bench/run.ts
 * or on its own: `node --import tsx bench/cli-startup.ts [runs]`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const CLI = resolve(import.meta.dirname, '..', 'dist', 'cli', 'main.js');

export interface StartupResult {
  runs: number;
  nodeMedianMs: number;
  kvGetMedianMs: number;
  /** kvGetMedianMs / nodeMedianMs. */
  ratio: number;
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function timeRun(args: string[], cwd: string): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}): ${r.stderr.toString()}`);
  return ms;
}

/** Needs `npm run build` first (it runs dist/cli/main.js, as users do). */
export function measureCliStartup(runs = 20): StartupResult {
  const dir = mkdtempSync(join(tmpdir(), 'buffdb-startup-'));
  try {
    timeRun([CLI, 'kv', 'set', 'key', 'value'], dir);
    // Warm the file cache for both before measuring.
    timeRun(['-e', '0'], dir);
    timeRun([CLI, 'kv', 'get', 'key'], dir);
    const node: number[] = [];
    const kv: number[] = [];
    for (let i = 0; i < runs; i++) {
      node.push(timeRun(['-e', '0'], dir));
      kv.push(timeRun([CLI, 'kv', 'get', 'key'], dir));
    }
    const nodeMedianMs = median(node);
    const kvGetMedianMs = median(kv);
    return { runs, nodeMedianMs, kvGetMedianMs, ratio: kvGetMedianMs / nodeMedianMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const r = measureCliStartup(Number(process.argv[2] ?? 20));
  console.log(
    `buffdb kv get: ${r.kvGetMedianMs.toFixed(1)} ms median, node -e 0: ${r.nodeMedianMs.toFixed(1)} ms ` +
      `(${r.runs} runs each, alternating); ratio ${r.ratio.toFixed(2)}x`,
  );
}
