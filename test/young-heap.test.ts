/**
 * `buffdb run --young-heap`: V8's new space held at a cap by the run-time growth factor
 * (src/cli/young-generation.ts). V8 flags are process-wide, so each case runs in its own node
 * process: the module under a load whose survivors make V8 double its new space, and a real server
 * under a Kv flood, its new space read from its own metrics.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { connect } from '../src/client/network.js';
import { nodeAsync } from './helpers/ops.js';
import { ROOT, spawnServer, tempDir, writeAll } from './helpers/server.js';

const MiB = 1024 * 1024;
const MODULE = join(ROOT, 'dist', 'cli', 'young-generation.js');

/**
 * A child that caps its young generation at `cap` MiB, then allocates objects that survive a few
 * collections (a ring of 20 000, about 2 MiB live: a busy server's order), one slice per event-loop
 * turn as a server does; then lets V8 shrink the new space (full collections while idle, polled with
 * a deadline) and loads again. Prints the largest new space seen in each phase and the size after
 * the idle collections. (The cap is applied a turn after each collection, so a load whose
 * survivors double the new space twice within one turn could pass it: src/cli/young-generation.ts.)
 */
const CHILD = `
import { capYoungGeneration, newSpaceBytes } from ${JSON.stringify(MODULE)};
capYoungGeneration(Number(process.argv[1]));
const ring = new Array(20_000);
let seq = 0;
const turn = () => new Promise((r) => setImmediate(r));
async function load() {
  let max = 0;
  for (let slice = 0; slice < 300; slice++) {
    for (let i = 0; i < 10_000; i++, seq++) ring[seq % ring.length] = { seq, text: 'v' + seq, pair: [seq, seq + 1] };
    max = Math.max(max, newSpaceBytes());
    await turn();
  }
  return max;
}
const first = await load();
ring.fill(undefined);
const deadline = Date.now() + 30_000;
while (newSpaceBytes() > 4 * 1048576 && Date.now() < deadline) {
  await new Promise((r) => setTimeout(r, 250));
  globalThis.gc();
}
const shrunk = newSpaceBytes();
const second = await load();
process.stdout.write(JSON.stringify({ first, shrunk, second }));
`;

interface ChildResult {
  first: number;
  shrunk: number;
  second: number;
}

async function runChild(capMiB: number): Promise<ChildResult> {
  const r = await nodeAsync(ROOT, ['--expose-gc', '--input-type=module', '-e', CHILD, String(capMiB)]);
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.out) as ChildResult;
}

describe('young generation cap', () => {
  test('without a cap the load grows the new space past 16 MiB (the load is enough to show a cap)', async () => {
    const r = await runChild(0);
    assert.ok(r.first > 16 * MiB, `V8's own rule: ${r.first / MiB} MiB`);
  });

  test('a 16 MiB cap holds the new space at 16 MiB, and after V8 shrinks it, it grows back to the cap and no further', async () => {
    const r = await runChild(16);
    assert.ok(r.first <= 16 * MiB, `first load: ${r.first / MiB} MiB`);
    assert.ok(r.shrunk <= 4 * MiB, `V8 shrank the new space while idle: ${r.shrunk / MiB} MiB`);
    assert.equal(r.second, 16 * MiB, `second load: ${r.second / MiB} MiB`);
  });

  test('buffdb run: the default cap holds the server under a 16-stream Kv flood, --young-heap 0 lets V8 grow it', async () => {
    const newSpaceUnderFlood = async (args: string[]): Promise<{ max: number; logged: number }> => {
      const dir = tempDir('buffdb-young-');
      const srv = await spawnServer(['127.0.0.1:0', '--metrics-addr', '127.0.0.1:0', ...args], dir, {
        BUFFDB_LOG_LEVEL: 'info',
      });
      try {
        const url = /metrics on (http:\/\/\S+\/metrics)/.exec(srv.stdout())![1]!;
        const line = srv
          .stderr()
          .split('\n')
          .find((l) => l.includes('listening on'));
        assert.ok(line, srv.stderr());
        const newSpace = async (): Promise<number> => {
          const text = await (await fetch(url)).text();
          const m = /^buffdb_nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)$/m.exec(text);
          assert.ok(m, 'the new-space gauge is served');
          return Number(m[1]);
        };
        const clients = connect(srv.addr);
        const value = 'v'.repeat(200);
        let max = await newSpace();
        let flooding = true;
        const sampler = (async () => {
          while (flooding) {
            max = Math.max(max, await newSpace());
            await new Promise((r) => setTimeout(r, 20));
          }
        })();
        try {
          await Promise.all(
            Array.from(
              { length: 16 },
              (_, s) =>
                new Promise<void>((resolve, reject) => {
                  const call = clients.kv.set();
                  call.on('data', () => {});
                  call.on('error', reject);
                  call.on('end', () => resolve());
                  writeAll(call, 6_000, (i) => ({ key: `k${s}-${i}`, value }));
                }),
            ),
          );
        } finally {
          flooding = false;
          await sampler;
          clients.close();
        }
        max = Math.max(max, await newSpace());
        return { max, logged: JSON.parse(line).youngHeapMiB as number };
      } finally {
        srv.child.kill('SIGTERM');
        await srv.exited;
        rmSync(dir, { recursive: true, force: true });
      }
    };
    const capped = await newSpaceUnderFlood([]);
    assert.equal(capped.logged, 16);
    assert.ok(capped.max <= 16 * MiB, `default cap: ${capped.max / MiB} MiB`);
    const own = await newSpaceUnderFlood(['--young-heap', '0']);
    assert.equal(own.logged, 0);
    assert.ok(own.max > 16 * MiB, `V8's own rule: ${own.max / MiB} MiB`);
  });
});
