/**
 * The two rows the durable-write path moves (issue #12): Blob Store 1 MiB and Kv Set on one
 * stream, each as a ratio to the bare grpc-js echo of the same messages, measured exactly as
 * `npm run bench` does (bench/run.ts), in interleaved rounds; medians of the per-round ratios.
 *
 *   node --import tsx bench/store-vs-echo.ts [--rounds=7] [--blobs=100] [--sets=50000]
 *                                            [--upload=256] [--cli=A/dist/cli/main.js,B/dist/cli/main.js]
 *
 * `--upload=MIB` adds the Upload row: one blob of MIB MiB in 1 MiB chunks against the echo of as
 * many 1 MiB messages (as bench/blob-large.ts does with 1 GiB).
 *
 * With several `--cli` builds, each round measures every build against the same echo round,
 * so builds can be compared under the same machine load.
 */

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { uploadBlob } from '../src/client/blob-transfer.js';
import { connect } from '../src/client/network.js';
import * as blobPb from '../src/generated/blob.js';
import * as kvPb from '../src/generated/kv.js';
import { type Child, echoClient, key16, log, median, pump, startChild, VALUE_100 } from './lib.js';

const MiB = 1024 * 1024;
const argv = process.argv.slice(2);
const arg = (name: string, fallback: string): string =>
  argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const ROUNDS = Number(arg('rounds', '7'));
const BLOBS = Number(arg('blobs', '100'));
const SETS = Number(arg('sets', '50000'));
const UPLOAD_MIB = Number(arg('upload', '0'));
const CLIS = arg('cli', join(import.meta.dirname, '..', 'dist', 'cli', 'main.js'))
  .split(',')
  .map((p) => resolve(p));

const dir = mkdtempSync(join(tmpdir(), 'buffdb-store-vs-echo-'));
const payload = Buffer.alloc(MiB, 0xab);
const storeMsg = (): blobPb.StoreRequest => ({ bytes: payload, metadata: undefined, transactionId: undefined });
const setMsg = (i: number): kvPb.SetRequest => ({ key: key16('k', i), value: VALUE_100, transactionId: undefined });

const echo = await startChild(process.execPath, [join(import.meta.dirname, 'echo-server.mjs')], dir);
const servers: Child[] = [];
for (const [i, cli] of CLIS.entries()) {
  const args = [
    cli,
    'run',
    '127.0.0.1:0',
    '--kv-store',
    join(dir, `kv${i}.db`),
    '--blob-store',
    join(dir, `blob${i}.db`),
  ];
  servers.push(await startChild(process.execPath, args, dir));
}
const echoBlob = echoClient(echo.addr, blobPb.StoreRequest);
const echoSet = echoClient(echo.addr, kvPb.SetRequest);
const echoUpload = echoClient(echo.addr, blobPb.UploadRequest);
const clients = servers.map((s) => connect(s.addr));

// Warm-up: JIT, connections, WAL files.
await pump(echoBlob.open(), 8, storeMsg);
await pump(echoSet.open(), 2000, setMsg);
for (const c of clients) {
  await pump(c.blob.store(), 8, storeMsg);
  await pump(c.kv.set(), 2000, setMsg);
}

const blobRatios: number[][] = CLIS.map(() => []);
const setRatios: number[][] = CLIS.map(() => []);
const uploadRatios: number[][] = CLIS.map(() => []);
const upload = async (i: number): Promise<number> => {
  const t0 = performance.now();
  const chunks = async function* (): AsyncGenerator<Buffer> {
    for (let k = 0; k < UPLOAD_MIB; k++) yield payload;
  };
  await uploadBlob(clients[i]!.blob, chunks(), { size: BigInt(UPLOAD_MIB * MiB) });
  return performance.now() - t0;
};
for (let r = 0; r < ROUNDS; r++) {
  // Builds take turns going first, so a build is not always measured right after the echo.
  const order = clients.map((_, i) => (i + r) % clients.length);
  const echoBlobMs = await pump(echoBlob.open(), BLOBS, storeMsg);
  for (const i of order) blobRatios[i]!.push(echoBlobMs / (await pump(clients[i]!.blob.store(), BLOBS, storeMsg)));
  const echoSetMs = await pump(echoSet.open(), SETS, setMsg);
  for (const i of order) setRatios[i]!.push(echoSetMs / (await pump(clients[i]!.kv.set(), SETS, setMsg)));
  if (UPLOAD_MIB > 0) {
    const echoUploadMs = await pump(echoUpload.open(), UPLOAD_MIB, () => ({ chunk: payload }));
    for (const i of order) uploadRatios[i]!.push(echoUploadMs / (await upload(i)));
  }
  log(
    `round ${r + 1}/${ROUNDS}: echo blob ${((BLOBS * MiB) / 1e6 / (echoBlobMs / 1000)).toFixed(0)} MB/s, ` +
      `echo set ${Math.round(SETS / (echoSetMs / 1000))} msgs/s; ` +
      CLIS.map(
        (_, i) =>
          `#${i} blob ${blobRatios[i]!.at(-1)!.toFixed(2)}x set ${setRatios[i]!.at(-1)!.toFixed(2)}x` +
          (UPLOAD_MIB > 0 ? ` upload ${uploadRatios[i]!.at(-1)!.toFixed(2)}x` : ''),
      ).join(', '),
  );
}
const fmt = (xs: number[]): string =>
  `median ${median(xs).toFixed(2)}x (${[...xs]
    .sort((a, b) => a - b)
    .map((x) => x.toFixed(2))
    .join(' ')})`;
for (const [i, cli] of CLIS.entries()) {
  process.stdout.write(`${cli}\n  Blob Store 1 MiB, 1 stream: ${fmt(blobRatios[i]!)}\n`);
  process.stdout.write(`  Kv Set, 1 stream:           ${fmt(setRatios[i]!)}\n`);
  if (UPLOAD_MIB > 0)
    process.stdout.write(
      `  Upload ${UPLOAD_MIB} MiB:${' '.repeat(Math.max(1, 16 - String(UPLOAD_MIB).length))}${fmt(uploadRatios[i]!)}\n`,
    );
  if (i > 0) {
    // Paired within each round (same load): this build's speed ÷ the first build's.
    const paired = (xs: number[][]): number[] => xs[i]!.map((x, r) => x / xs[0]![r]!);
    const uploadPaired = UPLOAD_MIB > 0 ? `, Upload ${fmt(paired(uploadRatios))}` : '';
    process.stdout.write(
      `  vs ${CLIS[0]}: Blob Store ${fmt(paired(blobRatios))}, Kv Set ${fmt(paired(setRatios))}${uploadPaired}\n`,
    );
  }
}
for (const c of clients) c.close();
echoBlob.close();
echoSet.close();
echoUpload.close();
await Promise.all([echo.stop(), ...servers.map((s) => s.stop())]);
rmSync(dir, { recursive: true, force: true });
