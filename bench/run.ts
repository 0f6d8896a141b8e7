/**
 * buffdb's benchmark: everything measured side by side in one run, as ratios to a reference
 * measured in the same run (the machine is noisy; absolute numbers only describe this run).
 *
 *   npm run bench                 full run (100k messages per stream test, 5 rounds)
 *   npm run bench -- --quick      under a minute (fewer messages and rounds)
 *   npm run bench -- --json       the results as one JSON object on stdout (progress on stderr)
 *   npm run bench -- --only=kv,blob,etcd,etcd-api,sync,library,backends,postgres,ops,cold,rss   just those sections
 *   npm run bench -- --profile[=set|get|blob|upload]
 *                                 `buffdb run` under Kv Set (or Get, or Blob Store+Get) load with
 *                                 --cpu-prof; prints self time by area and the top functions
 *
 * Layout: every server (buffdb and the bare grpc-js echo) is a child process; the client is this
 * process. buffdb is the real `buffdb run` (dist/cli/main.js) with default settings (durability
 * full: every acknowledged write is fsynced).
 */

import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { BACKEND_NAMES, capabilitiesOf } from '../src/backends/index.js';
import { downloadBlob, uploadBlob } from '../src/client/blob-transfer.js';
import { connect } from '../src/client/network.js';
import { openTransitive } from '../src/client/transitive.js';
import * as blobPb from '../src/generated/blob.js';
import * as kvPb from '../src/generated/kv.js';
import { largeBlobRows, resetPeak, sectionPeaks } from './blob-large.js';
import { etcdBinary, etcdKv, etcdLoad, startEtcd } from './etcd.js';
import { etcdApiSection } from './etcd-api.js';
import {
  type Child,
  echoClient,
  key16,
  log,
  median,
  memoryOf,
  pump,
  pumpMany,
  type Row,
  startChild,
  TUNED_CLIENT,
  VALUE_100,
  wallTime,
} from './lib.js';
import { equalWorkReference } from './library-reference.js';
import { measureOpsOverhead } from './ops.js';
import { postgresLibrary, postgresServer } from './postgres.js';
import { summarizeProfile } from './profile-summary.js';
import { syncSection } from './sync.js';

const ROOT = resolve(import.meta.dirname, '..');
const CLI = join(ROOT, 'dist', 'cli', 'main.js');
const ECHO = join(ROOT, 'bench', 'echo-server.mjs');

const argv = process.argv.slice(2);
const QUICK = argv.includes('--quick');
const JSON_OUT = argv.includes('--json');
/** `--only=kv,blob,etcd,etcd-api,sync,library,backends,postgres,ops,cold,rss`: run just those sections. */
const ONLY = argv
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
const want = (section: string): boolean => !ONLY || ONLY.includes(section);
const PROFILE_ARG = argv.find((a) => a === '--profile' || a.startsWith('--profile='));
const PROFILE = PROFILE_ARG === undefined ? undefined : (PROFILE_ARG.split('=')[1] ?? 'set');

const cfg = QUICK
  ? {
      n: 15_000,
      rounds: 3,
      streams16: 16,
      blobs: 16,
      blobRounds: 3,
      largeBlobMiB: 1024,
      lib: 20_000,
      libRounds: 3,
      backendN: 8_000,
      backendRounds: 1,
      cold: 7,
      rssStreams: 64,
      rssPer: 300,
      etcdN: 2_000,
      pgN: 5_000,
      pgRounds: 2,
    }
  : {
      n: 100_000,
      rounds: 5,
      streams16: 16,
      blobs: 100,
      blobRounds: 5,
      largeBlobMiB: 1024,
      lib: 100_000,
      libRounds: 5,
      backendN: 50_000,
      backendRounds: 3,
      cold: 20,
      rssStreams: 64,
      rssPer: 2_000,
      etcdN: 5_000,
      pgN: 20_000,
      pgRounds: 3,
    };

const MiB = 1024 * 1024;

const rows: Row[] = [];
const notes: string[] = [];

function addRatioRow(
  row: Omit<Row, 'value' | 'reference' | 'ratio' | 'pass'>,
  values: number[],
  refs: number[],
  min?: number,
): void {
  const ratios = values.map((v, i) => v / refs[i]!);
  const ratio = median(ratios);
  rows.push({
    ...row,
    value: median(values),
    reference: median(refs),
    ratio,
    ...(min !== undefined ? { target: `>= ${min}x`, pass: ratio >= min } : {}),
  });
  log(
    `${row.group} / ${row.name}: ${median(values).toFixed(1)} ${row.unit} vs ${median(refs).toFixed(1)} → ${ratio.toFixed(2)}x`,
  );
}

/** The folder of a recursive readdir entry (`parentPath` from Node 20.12, `path` before). */
const direntDir = (e: { parentPath?: string; path?: string }): string => e.parentPath ?? e.path ?? '';

/** Rebuilds dist when a source file is newer than the built CLI (the bench measures `buffdb run`). */
function ensureBuilt(): void {
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true, recursive: true })
      .filter((e) => e.isFile() && e.name.endsWith('.ts'))
      .reduce((m, e) => Math.max(m, statSync(join(direntDir(e), e.name)).mtimeMs), 0);
  if (existsSync(CLI) && statSync(CLI).mtimeMs >= newest(join(ROOT, 'src'))) return;
  log('dist is missing or older than src: npm run build');
  const res = spawnSync('npm', ['run', 'build'], { cwd: ROOT, stdio: ['ignore', 'inherit', 'inherit'] });
  if (res.status !== 0) {
    // tsc still emits on type errors; measure what was emitted, but say so.
    if (!existsSync(CLI)) throw new Error('npm run build failed');
    notes.push('npm run build reported errors; measured the JavaScript it emitted');
  }
}

function startBuffdb(dir: string, backend = 'sqlite', extra: string[] = []): Promise<Child> {
  return startChild(
    process.execPath,
    [
      ...extra,
      CLI,
      'run',
      '127.0.0.1:0',
      '--backend',
      backend,
      '--kv-store',
      join(dir, `kv-${backend}.db`),
      '--blob-store',
      join(dir, `blob-${backend}.db`),
    ],
    dir,
  );
}

const startEcho = (dir: string): Promise<Child> => startChild(process.execPath, [ECHO], dir);

const setReq =
  (prefix: string) =>
  (i: number): kvPb.SetRequest => ({ key: key16(prefix, i), value: VALUE_100, transactionId: undefined });
const getReq =
  (prefix: string) =>
  (i: number): kvPb.GetRequest => ({ key: key16(prefix, i), transactionId: undefined });

/**
 * Single-stream and 16-stream Kv Set/Get, each against the bare echo of its own request message
 * (SetRequest for Set, GetRequest for Get: the grpc-js client's cost per message depends on the
 * message size, see docs/performance.md). Rounds interleave so noise hits every figure alike.
 */
async function kvStreams(
  addr: string,
  echoAddr: string,
  group: string,
  n: number,
  rounds: number,
  withMulti: boolean,
): Promise<void> {
  const db = connect(addr);
  const echoSet = echoClient(echoAddr, kvPb.SetRequest);
  const echoGet = echoClient(echoAddr, kvPb.GetRequest);
  const setMsg = setReq('k');
  const getMsg = getReq('k');
  const m = {
    echoSet1: [] as number[],
    set1: [] as number[],
    echoGet1: [] as number[],
    get1: [] as number[],
    echoSetN: [] as number[],
    setN: [] as number[],
    echoGetN: [] as number[],
    getN: [] as number[],
  };
  const S = cfg.streams16;
  const per = Math.floor(n / S);
  const setS = (s: number, i: number): kvPb.SetRequest => setReq(`s${s}-`)(i);
  const getS = (s: number, i: number): kvPb.GetRequest => getReq(`s${s}-`)(i);
  // Warm-up: JIT, connections, and the keys Get reads.
  await pump(echoSet.open(), 2000, setMsg);
  await pump(echoGet.open(), 2000, getMsg);
  await pump(db.kv.set(), n, setMsg);
  if (withMulti) await pumpMany(() => db.kv.set(), S, per, setS);
  await pump(db.kv.get(), 2000, getMsg);
  const rate =
    (count: number) =>
    (ms: number): number =>
      count / (ms / 1000);
  for (let r = 0; r < rounds; r++) {
    m.echoSet1.push(rate(n)(await pump(echoSet.open(), n, setMsg)));
    m.set1.push(rate(n)(await pump(db.kv.set(), n, setMsg)));
    m.echoGet1.push(rate(n)(await pump(echoGet.open(), n, getMsg)));
    m.get1.push(rate(n)(await pump(db.kv.get(), n, getMsg)));
    if (withMulti) {
      m.echoSetN.push(rate(S * per)(await pumpMany(echoSet.open, S, per, setS)));
      m.setN.push(rate(S * per)(await pumpMany(() => db.kv.set(), S, per, setS)));
      m.echoGetN.push(rate(S * per)(await pumpMany(echoGet.open, S, per, getS)));
      m.getN.push(rate(S * per)(await pumpMany(() => db.kv.get(), S, per, getS)));
    }
  }
  const main = group === 'gRPC (sqlite)';
  const ref1 = (what: string): string => `bare grpc-js echo of the same ${what} messages, ${n} msgs, 1 stream`;
  addRatioRow(
    { group, name: 'Kv Set, 1 stream', unit: 'msgs/s', referenceName: ref1('SetRequest') },
    m.set1,
    m.echoSet1,
    main ? 0.8 : undefined,
  );
  addRatioRow(
    { group, name: 'Kv Get, 1 stream', unit: 'msgs/s', referenceName: ref1('GetRequest') },
    m.get1,
    m.echoGet1,
    main ? 0.85 : undefined,
  );
  if (withMulti) {
    const refN = (what: string): string => `bare grpc-js echo of the same ${what} messages, ${S} streams × ${per}`;
    addRatioRow(
      { group, name: `Kv Set, ${S} streams (aggregate)`, unit: 'msgs/s', referenceName: refN('SetRequest') },
      m.setN,
      m.echoSetN,
      0.8,
    );
    addRatioRow(
      { group, name: `Kv Get, ${S} streams (aggregate)`, unit: 'msgs/s', referenceName: refN('GetRequest') },
      m.getN,
      m.echoGetN,
      0.85,
    );
  }
  db.close();
  echoSet.close();
  echoGet.close();
}

async function blobStreams(buff: Child, echoServer: Child): Promise<void> {
  const { addr } = buff;
  const echoAddr = echoServer.addr;
  // Each server's peak before this section (the Kv floods' for buffdb), read before the reset below.
  const earlierPeak = { buff: memoryOf(buff.pid).hwm, echo: memoryOf(echoServer.pid).hwm };
  const peaksReset = resetPeak(buff.pid) && resetPeak(echoServer.pid);
  // What each server already holds when the section starts (earlier sections leave some behind).
  const startRss = { buff: memoryOf(buff.pid).rss, echo: memoryOf(echoServer.pid).rss };
  const db = connect(addr);
  const echo = echoClient(echoAddr, blobPb.StoreRequest);
  const payload = Buffer.alloc(MiB, 0xab);
  const n = cfg.blobs;
  const storeMsg = (): blobPb.StoreRequest => ({ bytes: payload, metadata: undefined, transactionId: undefined });
  const echoR: number[] = [];
  const storeR: number[] = [];
  const getR: number[] = [];
  // Warm-up, and the ids Get reads.
  await pump(echo.open(), 4, storeMsg);
  const ids: bigint[] = [];
  await new Promise<void>((res, rej) => {
    const call = db.blob.store();
    call.on('data', (r: blobPb.StoreResponse) => ids.push(r.id));
    call.on('error', rej);
    call.on('end', () => res());
    for (let i = 0; i < n; i++) call.write(storeMsg());
    call.end();
  });
  const mbps = (ms: number): number => (n * MiB) / 1e6 / (ms / 1000);
  for (let r = 0; r < cfg.blobRounds; r++) {
    echoR.push(mbps(await pump(echo.open(), n, storeMsg)));
    storeR.push(mbps(await pump(db.blob.store(), n, storeMsg)));
    getR.push(mbps(await pump(db.blob.get(), n, (i) => ({ id: ids[i]!, transactionId: undefined }))));
  }
  const ref = `bare grpc-js echo of ${n} × 1 MiB messages`;
  addRatioRow(
    { group: 'gRPC (sqlite)', name: 'Blob Store 1 MiB, 1 stream', unit: 'MB/s', referenceName: ref },
    storeR,
    echoR,
    0.6,
  );
  addRatioRow(
    { group: 'gRPC (sqlite)', name: 'Blob Get 1 MiB, 1 stream', unit: 'MB/s', referenceName: ref },
    getR,
    echoR,
    0.6,
  );
  await largeBlobRows(db, echoAddr, cfg.largeBlobMiB, 1, addRatioRow);
  db.close();
  echo.close();
  if (!peaksReset) notes.push('blob section peak RSS: skipped — /proc/PID/clear_refs could not be written');
  else {
    const peak = sectionPeaks(buff.pid, echoServer.pid);
    const ratio = peak.buff / peak.echo;
    rows.push({
      group: 'gRPC (sqlite)',
      name: 'peak server RSS over the blob section',
      unit: 'MiB',
      value: peak.buff,
      reference: peak.echo,
      referenceName: 'the echo server over the same section',
      ratio,
      lowerIsBetter: true,
      target: '<= 1.5x',
      pass: ratio <= 1.5,
      note:
        `RSS at the section's start: buffdb ${startRss.buff.toFixed(0)} MiB, echo ${startRss.echo.toFixed(0)} MiB; ` +
        `peak over the run so far (earlier sections too): buffdb ${Math.max(earlierPeak.buff, peak.buff).toFixed(0)} MiB, ` +
        `echo ${Math.max(earlierPeak.echo, peak.echo).toFixed(0)} MiB`,
    });
    log(
      `blob section peak RSS: buffdb ${peak.buff.toFixed(0)} MiB vs echo ${peak.echo.toFixed(0)} MiB → ${ratio.toFixed(2)}x` +
        ` (at its start: ${startRss.buff.toFixed(0)} vs ${startRss.echo.toFixed(0)} MiB)`,
    );
  }
}

/** Runs the library section in a fresh bench process (`--only=library --json`) and takes its rows. */
function libraryInChild(): void {
  const args = ['--import', 'tsx', fileURLToPath(import.meta.url), '--only=library', '--json'];
  if (QUICK) args.push('--quick');
  const res = spawnSync(process.execPath, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  if (res.status !== 0) {
    notes.push(`library: not measured — its process exited with ${res.status ?? res.signal}`);
    return;
  }
  const out = JSON.parse(res.stdout) as { rows: Row[]; notes: string[] };
  rows.push(...out.rows);
  notes.push(...out.notes);
}

/** The in-process library (transitive client, store promise API) vs raw better-sqlite3 doing the same batched work. */
async function library(dir: string): Promise<void> {
  const n = cfg.lib;
  const BATCH = 1000;
  const keys = Array.from({ length: n }, (_, i) => key16('L', i));
  const raw = new Database(join(dir, 'raw.db'));
  raw.pragma('journal_mode = WAL');
  raw.pragma('synchronous = FULL');
  raw.exec('CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT) WITHOUT ROWID');
  const put = raw.prepare('INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)');
  const get = raw.prepare('SELECT value FROM kv WHERE key = ?').pluck();
  const putBatch = raw.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) put.run(keys[i]!, VALUE_100);
  });
  const getBatch = raw.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) if (get.get(keys[i]!) === undefined) throw new Error('raw get: missing');
  });
  const rawSet = (): number => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) putBatch(i, Math.min(n, i + BATCH));
    return performance.now() - t0;
  };
  const rawGet = (): number => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) getBatch(i, Math.min(n, i + BATCH));
    return performance.now() - t0;
  };

  const equal = equalWorkReference(join(dir, 'equal-work.db'), keys, VALUE_100, BATCH);

  // Auto-compaction off: the reference keeps all its history too, and compaction timed by a 5 s
  // timer would land in whichever round runs then; its cost is a row of its own below.
  const lib = await openTransitive({
    kvStore: join(dir, 'lib-kv.db'),
    blobStore: join(dir, 'lib-blob.db'),
    autoCompact: false,
  });
  // Every write below is one Set: one revision, one history event.
  const firstRev = lib.db.kv.status().rev + 1;
  const tSet = (): Promise<number> =>
    pump(lib.kv.set(), n, (i) => ({ key: keys[i]!, value: VALUE_100, transactionId: undefined }));
  const tGet = (): Promise<number> => pump(lib.kv.get(), n, (i) => ({ key: keys[i]!, transactionId: undefined }));
  const promiseSet = async (): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      const window: Promise<void>[] = [];
      for (let j = i; j < Math.min(n, i + BATCH); j++) window.push(lib.db.kv.setValue(keys[j]!, VALUE_100));
      await Promise.all(window);
    }
    return performance.now() - t0;
  };
  const promiseGet = async (): Promise<number> => {
    const t0 = performance.now();
    for (let i = 0; i < n; i += BATCH) {
      const window: Promise<string>[] = [];
      for (let j = i; j < Math.min(n, i + BATCH); j++) window.push(lib.db.kv.getValue(keys[j]!));
      await Promise.all(window);
    }
    return performance.now() - t0;
  };
  rawSet();
  rawGet();
  equal.set();
  equal.get();
  await tSet();
  await tGet(); // warm-up
  const r = {
    rawSet: [] as number[],
    rawGet: [] as number[],
    eqSet: [] as number[],
    eqGet: [] as number[],
    tSet: [] as number[],
    tGet: [] as number[],
    pSet: [] as number[],
    pGet: [] as number[],
  };
  const ops = (ms: number): number => n / (ms / 1000);
  for (let round = 0; round < cfg.libRounds; round++) {
    r.rawSet.push(ops(rawSet()));
    r.eqSet.push(ops(equal.set()));
    r.tSet.push(ops(await tSet()));
    r.pSet.push(ops(await promiseSet()));
    r.rawGet.push(ops(rawGet()));
    r.eqGet.push(ops(equal.get()));
    r.tGet.push(ops(await tGet()));
    r.pGet.push(ops(await promiseGet()));
  }
  const group = 'library (in-process, sqlite)';
  // Targets against the equal-work reference: buffdb's own storage statements, run raw.
  const eqSet = `raw better-sqlite3 running buffdb's Set statements (read record; write stamp, record, event; rev per batch), ${BATCH} per transaction, WAL, synchronous=FULL`;
  const eqGet = `raw better-sqlite3 running buffdb's Get statements (read the value as text; counters per batch), ${BATCH} per transaction`;
  const libRows: [string, number[], number[], string, string][] = [
    [`transitive kv.set stream, ${n} msgs`, r.tSet, r.eqSet, eqSet, 'equal-work statements'],
    [`transitive kv.get stream, ${n} msgs`, r.tGet, r.eqGet, eqGet, 'equal-work statements'],
    [`store setValue() promises, ${BATCH} in flight`, r.pSet, r.eqSet, eqSet, 'equal-work statements'],
    [`store getValue() promises, ${BATCH} in flight`, r.pGet, r.eqGet, eqGet, 'equal-work statements'],
  ];
  for (const [name, values, refs, referenceName, vs] of libRows)
    addRatioRow({ group, name: `${name} vs ${vs}`, unit: 'ops/s', referenceName }, values, refs, 0.7);
  // Informational: against one raw statement per operation (what a plain key-value table costs).
  const oneSet = `raw better-sqlite3: one prepared INSERT OR REPLACE per Set, ${BATCH} per transaction, WAL, synchronous=FULL`;
  const oneGet = `raw better-sqlite3: one prepared SELECT per Get, ${BATCH} per transaction`;
  const oneRows: [string, number[], number[], string][] = [
    [`transitive kv.set stream, ${n} msgs`, r.tSet, r.rawSet, oneSet],
    [`transitive kv.get stream, ${n} msgs`, r.tGet, r.rawGet, oneGet],
    [`store setValue() promises, ${BATCH} in flight`, r.pSet, r.rawSet, oneSet],
    [`store getValue() promises, ${BATCH} in flight`, r.pGet, r.rawGet, oneGet],
    [`equal-work reference Set (raw, buffdb's statements)`, r.eqSet, r.rawSet, oneSet],
    [`equal-work reference Get (raw, buffdb's statements)`, r.eqGet, r.rawGet, oneGet],
  ];
  for (const [name, values, refs, referenceName] of oneRows)
    addRatioRow({ group, name: `${name} vs one raw statement`, unit: 'ops/s', referenceName }, values, refs);
  // What the default retention (the last 100 000 revisions) costs each write later, in the background.
  const target = lib.db.kv.status().rev - n;
  const tc = performance.now();
  await lib.db.kv.compact(target, true);
  const dropped = target - firstRev;
  const compactRate = dropped / ((performance.now() - tc) / 1000);
  rows.push({
    group,
    name: `history compaction, ${dropped} events dropped (physical)`,
    unit: 'events/s',
    value: compactRate,
    note: "informational: each dropped local put's key is looked up (its stamp moves to the key's row if it was the last write)",
  });
  log(`library: compaction ${compactRate.toFixed(0)} events/s`);
  equal.close();
  await lib.close();
  raw.close();
}

/** `buffdb kv get KEY` (or `--version` while the kv commands do not exist) vs `node -e 0`. */
function coldStart(dir: string): void {
  const store = join(dir, 'cold-kv.db');
  const set = spawnSync(process.execPath, [CLI, 'kv', 'set', 'cold-key', 'cold-value', '--store', store], { cwd: dir });
  let args = [CLI, 'kv', 'get', 'cold-key', '--store', store];
  let what = '`buffdb kv get KEY`';
  const probe = spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8' });
  if (set.status !== 0 || probe.status !== 0 || !probe.stdout.includes('cold-value')) {
    args = [CLI, '--version'];
    what = '`buffdb --version` (kv get unavailable)';
    notes.push(
      'cold start measured `buffdb --version`: `buffdb kv get` did not work in this tree ' +
        `(${(probe.stderr || set.stderr?.toString() || '').trim().split('\n')[0] ?? ''})`,
    );
  }
  wallTime(process.execPath, ['-e', '0'], 2, dir); // warm the page cache
  wallTime(process.execPath, args, 2, dir);
  const node: number[] = [];
  const buff: number[] = [];
  for (let r = 0; r < cfg.cold; r++) {
    node.push(...wallTime(process.execPath, ['-e', '0'], 1, dir));
    buff.push(...wallTime(process.execPath, args, 1, dir));
  }
  const ratios = buff.map((b, i) => b / node[i]!);
  const ratio = median(ratios);
  rows.push({
    group: 'CLI',
    name: `${what} cold start`,
    unit: 'ms',
    value: median(buff),
    reference: median(node),
    referenceName: '`node -e 0`',
    ratio,
    lowerIsBetter: true,
    target: '<= 2x',
    pass: ratio <= 2,
  });
  log(`cold start: ${median(buff).toFixed(1)} ms vs node -e 0 ${median(node).toFixed(1)} ms → ${ratio.toFixed(2)}x`);
}

/** Peak RSS of a fresh `buffdb run` after 64 concurrent Set streams, then 64 Get streams. */
async function peakRss(dir: string): Promise<void> {
  const server = await startBuffdb(dir, 'sqlite');
  const idle = memoryOf(server.pid);
  const db = connect(server.addr);
  const S = cfg.rssStreams;
  await pumpMany(
    () => db.kv.set(),
    S,
    cfg.rssPer,
    (s, i) => setReq(`r${s}-`)(i),
  );
  await pumpMany(
    () => db.kv.get(),
    S,
    cfg.rssPer,
    (s, i) => getReq(`r${s}-`)(i),
  );
  const kvPeak = memoryOf(server.pid).hwm;
  rows.push({
    group: 'server',
    name: `peak RSS, ${S} concurrent Kv streams × ${cfg.rssPer} Set then Get`,
    unit: 'MiB',
    value: kvPeak,
    target: '<= 200 MiB',
    pass: kvPeak <= 200,
    note: `idle RSS ${idle.rss.toFixed(0)} MiB`,
  });
  log(`peak RSS with ${S} Kv streams: ${kvPeak.toFixed(1)} MiB (idle ${idle.rss.toFixed(1)} MiB)`);
  // The same 64 streams carrying 1 MiB blobs (4 each): informational.
  const payload = Buffer.alloc(MiB, 0xcd);
  await pumpMany(
    () => db.blob.store(),
    S,
    4,
    () => ({ bytes: payload, metadata: undefined, transactionId: undefined }),
  );
  const blobPeak = memoryOf(server.pid).hwm;
  rows.push({
    group: 'server',
    name: `peak RSS, then ${S} concurrent Blob Store streams × 4 × 1 MiB`,
    unit: 'MiB',
    value: blobPeak,
    note: 'informational: 64 MiB of blobs in flight at once',
  });
  log(`peak RSS after ${S} blob streams: ${blobPeak.toFixed(1)} MiB`);
  db.close();
  await server.stop();
}

async function etcd(dir: string, buffAddr: string): Promise<void> {
  const bin = etcdBinary();
  if (!bin) {
    notes.push('etcd: skipped — no `etcd` binary on PATH (Debian: apt-get install etcd-server)');
    log('etcd: skipped (no etcd on PATH)');
    return;
  }
  const server = await startEtcd(bin, dir);
  const kv = etcdKv(server.addr);
  const db = connect(buffAddr);
  const n = cfg.etcdN;
  const keys = Array.from({ length: n }, (_, i) => Buffer.from(key16('e', i)));
  const value = Buffer.from(VALUE_100);
  for (const inFlight of [16, 64]) {
    await etcdLoad((i) => kv.put(keys[i % n]!, value), Math.min(500, n), inFlight); // warm-up
    const ePut: number[] = [];
    const eGet: number[] = [];
    const bSet: number[] = [];
    const bGet: number[] = [];
    const per = Math.floor(n / inFlight);
    for (let r = 0; r < Math.min(3, cfg.rounds); r++) {
      ePut.push(n / ((await etcdLoad((i) => kv.put(keys[i]!, value), n, inFlight)) / 1000));
      eGet.push(n / ((await etcdLoad((i) => kv.get(keys[i]!), n, inFlight)) / 1000));
      bSet.push(
        (per * inFlight) /
          ((await pumpMany(
            () => db.kv.set(),
            inFlight,
            per,
            (s, i) => setReq(`e${s}-`)(i),
          )) /
            1000),
      );
      bGet.push(
        (per * inFlight) /
          ((await pumpMany(
            () => db.kv.get(),
            inFlight,
            per,
            (s, i) => getReq(`e${s}-`)(i),
          )) /
            1000),
      );
    }
    const group = 'peer: etcd';
    addRatioRow(
      {
        group,
        name: `buffdb Set (${inFlight} streams) vs etcd Put (${inFlight} in flight)`,
        unit: 'ops/s',
        referenceName: 'etcd 3 Put, default durability',
      },
      bSet,
      ePut,
    );
    addRatioRow(
      {
        group,
        name: `buffdb Get (${inFlight} streams) vs etcd Range (${inFlight} in flight)`,
        unit: 'ops/s',
        referenceName: 'etcd 3 Range',
      },
      bGet,
      eGet,
    );
  }
  kv.close();
  db.close();
  await server.stop();
}

/** `buffdb run` under Kv Set load with --cpu-prof; prints the heaviest functions by self time. */
async function profile(dir: string, workload: string): Promise<void> {
  const profDir = mkdtempSync(join(tmpdir(), 'buffdb-profile-'));
  const server = await startBuffdb(dir, 'sqlite', ['--cpu-prof', `--cpu-prof-dir=${profDir}`]);
  const db = connect(server.addr, { clientOptions: TUNED_CLIENT });
  if (workload === 'blob') {
    const payload = Buffer.alloc(MiB, 0xab);
    const ids: bigint[] = [];
    for (let r = 0; r < 3; r++) {
      const call = db.blob.store();
      call.on('data', (res: blobPb.StoreResponse) => ids.push(res.id));
      await pump(call, cfg.blobs, () => ({ bytes: payload, metadata: undefined, transactionId: undefined }));
    }
    for (let r = 0; r < 3; r++)
      await pump(db.blob.get(), cfg.blobs, (i) => ({ id: ids[i]!, transactionId: undefined }));
  } else if (workload === 'upload') {
    // One Upload of the large-blob row's size, in 1 MiB chunks, then its Download.
    const payload = Buffer.alloc(MiB, 0xcd);
    const chunks = async function* (): AsyncGenerator<Buffer> {
      for (let i = 0; i < cfg.largeBlobMiB; i++) yield payload;
    };
    const { id } = await uploadBlob(db.blob, chunks(), { size: BigInt(cfg.largeBlobMiB * MiB) });
    for await (const _ of downloadBlob(db.blob, id) as AsyncIterable<Buffer>) {
    }
  } else {
    const get = workload === 'get';
    if (get) await pump(db.kv.set(), cfg.n, setReq('p'));
    for (let r = 0; r < 3; r++)
      await (get ? pump(db.kv.get(), cfg.n, getReq('p')) : pump(db.kv.set(), cfg.n, setReq('p')));
    if (get)
      await pumpMany(
        () => db.kv.set(),
        16,
        Math.floor(cfg.n / 16),
        (s, i) => setReq(`p${s}-`)(i),
      );
    for (let r = 0; r < 2; r++) {
      if (get)
        await pumpMany(
          () => db.kv.get(),
          16,
          Math.floor(cfg.n / 16),
          (s, i) => getReq(`p${s}-`)(i),
        );
      else
        await pumpMany(
          () => db.kv.set(),
          16,
          Math.floor(cfg.n / 16),
          (s, i) => setReq(`p${s}-`)(i),
        );
    }
  }
  db.close();
  await server.stop();
  const file = readdirSync(profDir)
    .filter((f) => f.endsWith('.cpuprofile'))
    .map((f) => join(profDir, f))
    .sort((a, b) => statSync(b).mtimeMs - statSync(a).mtimeMs)[0];
  if (!file) throw new Error('no .cpuprofile written');
  process.stdout.write(summarizeProfile(file, ROOT));
}

function fmt(x: number | undefined, unit: string): string {
  if (x === undefined || Number.isNaN(x)) return '';
  if (unit === 'ms' || unit === 'MiB' || unit === 'MB/s') return x.toFixed(1);
  if (unit === 's') return x.toFixed(2);
  return Math.round(x).toLocaleString('en-US');
}

function table(): string {
  const header = ['group', 'measurement', 'buffdb', 'reference', 'unit', 'ratio', 'target', 'result'];
  const body = rows.map((r) => [
    r.group,
    r.name,
    fmt(r.value, r.unit),
    fmt(r.reference, r.unit),
    r.unit,
    r.ratio === undefined ? '' : `${r.ratio.toFixed(2)}x`,
    r.target ?? '',
    r.pass === undefined ? '' : r.pass ? 'PASS' : 'MISS',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => `| ${cells.map((c, i) => c.padEnd(widths[i]!)).join(' | ')} |`;
  const out = [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...body.map(line)];
  const refs = [
    ...new Set(rows.filter((r) => r.referenceName).map((r) => `${r.group} / ${r.name}: ${r.referenceName}`)),
  ];
  out.push('', 'references:', ...refs.map((r) => `  ${r}`));
  for (const r of rows.filter((x) => x.note)) out.push(`  note — ${r.name}: ${r.note}`);
  if (notes.length) out.push('', ...notes.map((n) => `note: ${n}`));
  return out.join('\n');
}

/** What TLS, auth and observation cost: each configuration against the default server, same run. */
async function opsCost(): Promise<void> {
  const messages = QUICK ? 5000 : 20_000;
  const rounds = QUICK ? 2 : 5;
  log(`ops: TLS / auth / metrics cost, ${messages} msgs, ${rounds} rounds`);
  const { rates } = await measureOpsOverhead({ messages, rounds });
  const base = rates.default!;
  const referenceName = 'the default server (plaintext, no auth), interleaved in the same run';
  for (const [name, r] of Object.entries(rates)) {
    if (name === 'default') continue;
    addRatioRow({ group: 'ops', name: `Kv Set 1 stream, ${name}`, unit: 'msgs/s', referenceName }, r.set, base.set);
    addRatioRow({ group: 'ops', name: `Kv Get 1 stream, ${name}`, unit: 'msgs/s', referenceName }, r.get, base.get);
  }
}

async function main(): Promise<void> {
  const t0 = performance.now();
  ensureBuilt();
  const dir = mkdtempSync(join(tmpdir(), 'buffdb-bench-'));
  const children: Child[] = [];
  try {
    if (PROFILE) {
      await profile(dir, PROFILE);
      return;
    }
    const echo = await startEcho(dir);
    children.push(echo);
    const buff = await startBuffdb(dir);
    children.push(buff);
    log(`${QUICK ? 'quick' : 'full'} run; echo ${echo.addr}, buffdb ${buff.addr}, files in ${dir}`);
    if (want('kv')) await kvStreams(buff.addr, echo.addr, 'gRPC (sqlite)', cfg.n, cfg.rounds, true);
    if (want('blob')) await blobStreams(buff, echo);
    if (want('etcd')) await etcd(dir, buff.addr);
    if (want('etcd-api')) {
      const bin = etcdBinary();
      if (!bin) notes.push('etcd API: skipped — no `etcd` binary on PATH (Debian: apt-get install etcd-server)');
      else
        await etcdApiSection(
          buff.addr,
          echo.addr,
          bin,
          dir,
          { quick: QUICK, rounds: Math.min(3, cfg.rounds) },
          addRatioRow,
        );
    }
    await buff.stop();
    if (want('sync'))
      await syncSection({
        cli: CLI,
        dir,
        quick: QUICK,
        push: (row) => {
          rows.push(row);
        },
      });
    if (want('library')) {
      // In-process code is measured in a process of its own when other sections ran before it:
      // their garbage would otherwise be collected on the library's time (and not the raw
      // reference's, which allocates little).
      if (ONLY?.length === 1) await library(dir);
      else libraryInChild();
    }
    // Backends whose stores are files; postgres has its own section (a database server).
    const fileBackends = BACKEND_NAMES.filter((b) => capabilitiesOf(b).storeLocation !== 'url');
    for (const backend of fileBackends.filter((b) => b !== 'sqlite' && want('backends'))) {
      try {
        const server = await startBuffdb(dir, backend);
        children.push(server);
        // A slow engine gets fewer messages (about 3 s per stream) so the run stays bounded.
        const probe = connect(server.addr);
        const probeN = 2000;
        const slowest =
          Math.min(
            probeN / (await pump(probe.kv.set(), probeN, setReq('k'))),
            probeN / (await pump(probe.kv.get(), probeN, getReq('k'))),
          ) * 1000;
        probe.close();
        const n = Math.max(probeN, Math.min(cfg.backendN, Math.round((slowest * (QUICK ? 1.5 : 3)) / 1000) * 1000));
        if (n < cfg.backendN)
          notes.push(
            `backend ${backend}: ${n} messages per stream (a slow engine: ~${Math.round(slowest)} msgs/s in a probe)`,
          );
        await kvStreams(server.addr, echo.addr, `gRPC (${backend})`, n, cfg.backendRounds, false);
        await server.stop();
      } catch (err) {
        notes.push(`backend ${backend}: not measured — ${(err as Error).message.split('\n')[0]}`);
        log(`backend ${backend} failed: ${(err as Error).message}`);
      }
    }
    if (want('postgres')) {
      try {
        const start = async (backend: string, kv: string, blob: string): Promise<Child> => {
          const c = await startChild(
            process.execPath,
            [CLI, 'run', '127.0.0.1:0', '--backend', backend, '--kv-store', kv, '--blob-store', blob],
            dir,
          );
          children.push(c);
          return c;
        };
        log(`postgres: ${cfg.pgN} msgs, ${cfg.pgRounds} rounds`);
        await postgresServer(start, echo.addr, cfg.pgN, cfg.pgRounds, addRatioRow);
        await postgresLibrary(cfg.pgN, cfg.pgRounds, addRatioRow);
      } catch (err) {
        notes.push(`postgres: not measured — ${(err as Error).message.split('\n')[0]}`);
        log(`postgres failed: ${(err as Error).message}`);
      }
    }
    await echo.stop();
    if (want('ops')) await opsCost();
    if (want('cold')) {
      log(`cold start (${cfg.cold} runs each)`);
      coldStart(dir);
    }
    if (want('rss')) await peakRss(dir);
  } finally {
    for (const c of children) await c.stop().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
  }
  const seconds = (performance.now() - t0) / 1000;
  const meta = {
    date: new Date().toISOString(),
    mode: QUICK ? 'quick' : 'full',
    seconds: Math.round(seconds),
    node: process.version,
    cpus: cpus().length,
    cpu: cpus()[0]?.model ?? 'unknown',
    config: cfg,
  };
  if (JSON_OUT) {
    process.stdout.write(`${JSON.stringify({ ...meta, rows, notes }, null, 2)}\n`);
  } else {
    process.stdout.write(
      `\nbuffdb bench (${meta.mode}) — ${meta.date}, node ${meta.node}, ${meta.cpus} × ${meta.cpu}, ${meta.seconds} s\n`,
    );
    process.stdout.write(
      'ratio = buffdb / reference, median of per-round ratios measured side by side (cold start: lower is better)\n\n',
    );
    process.stdout.write(`${table()}\n`);
  }
}

await main();
