/** Reads a V8 .cpuprofile and ranks self time by area and by function. */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

export function summarizeProfile(file: string, root: string): string {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as {
    nodes: ProfileNode[];
    samples: number[];
    timeDeltas: number[];
  };
  const self = new Map<string, number>();
  const byId = new Map(prof.nodes.map((n) => [n.id, n]));
  const deltas = new Map<number, number>();
  for (const [i, id] of prof.samples.entries()) deltas.set(id, (deltas.get(id) ?? 0) + (prof.timeDeltas[i] ?? 0));
  let total = 0;
  for (const [id, us] of deltas) {
    const n = byId.get(id)!;
    const url = n.callFrame.url.replace(/^file:\/\//, '').replace(`${root}/`, '');
    const name =
      `${n.callFrame.functionName || '(anonymous)'} ${url ? `${url}:${n.callFrame.lineNumber + 1}` : ''}`.trim();
    self.set(name, (self.get(name) ?? 0) + us);
    total += us;
  }
  const byArea = new Map<string, number>();
  for (const [name, us] of self) {
    const area = name.includes('node_modules/@grpc')
      ? 'grpc-js'
      : name.includes('node_modules/better-sqlite3')
        ? 'better-sqlite3 (JS)'
        : name.includes('dist/')
          ? 'buffdb'
          : name.includes('node_modules/@bufbuild')
            ? 'protobuf wire'
            : name.startsWith('(garbage')
              ? 'GC'
              : name.startsWith('(program)') || name.startsWith('(idle)')
                ? name.split(' ')[0]!
                : name.includes('node:')
                  ? 'node core'
                  : 'native/other';
    byArea.set(area, (byArea.get(area) ?? 0) + us);
  }
  const out: string[] = [`profile: ${file}`, '', 'self time by area:'];
  for (const [a, us] of [...byArea].sort((x, y) => y[1] - x[1]))
    out.push(`  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${a}`);
  out.push('', 'top 30 functions by self time:');
  for (const [name, us] of [...self].sort((x, y) => y[1] - x[1]).slice(0, 30)) {
    out.push(`  ${((100 * us) / total).toFixed(1).padStart(5)}%  ${name}`);
  }
  return `${out.join('\n')}\n`;
}

// `node --import tsx bench/profile-summary.ts FILE.cpuprofile`
if (process.argv[1] && import.meta.filename === process.argv[1]) {
  process.stdout.write(summarizeProfile(process.argv[2]!, process.cwd()));
}
