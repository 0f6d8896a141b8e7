/**
 * Copies a store from one backend to another (`buffdb migrate`): the KV store as it is — current
 * records with their revisions, the history, leases, the revision counters and ids — and the BLOB
 * store with its ids, so clients, watchers resuming from a revision and blob ids all carry over.
 * Works below the store layer (engine batches, no new revisions), page by page, into an empty
 * destination. Stop writers of the source first: the copy is of the state it reads.
 */
import {
  type Backend,
  BLOB_MAPS,
  type BlobEngineOps,
  KV_MAPS,
  type KvEngineOps,
  type MapName,
  type MapOps,
  type OpenOptions,
  type StoreEngine,
} from '../backends/backend.js';
import { failedPrecondition } from '../errors.js';

const PAGE = 500;
const EMPTY: Buffer = Buffer.alloc(0);
const after = (key: Buffer): Buffer => Buffer.concat([key, Buffer.of(0)]);

export interface StoreSpec {
  backend: Backend;
  kvStore: string;
  blobStore: string;
}

export interface CopyCounts {
  keys: number;
  mapEntries: number;
  blobs: number;
}

async function copyMap<A, B>(
  from: StoreEngine<A>,
  to: StoreEngine<B>,
  mapsOf: { from: (ops: A) => MapOps; to: (ops: B) => MapOps },
  map: MapName,
): Promise<number> {
  let start: Buffer = EMPTY;
  let n = 0;
  for (;;) {
    const rows = await from.batch(async (ops) =>
      mapsOf.from(ops).range(map, { start, end: undefined, limit: PAGE, reverse: false }),
    );
    if (rows.length === 0) return n;
    await to.batch(async (ops) => {
      for (const [k, v] of rows) await mapsOf.to(ops).put(map, k, v);
    });
    n += rows.length;
    if (rows.length < PAGE) return n;
    start = after(rows[rows.length - 1]![0]);
  }
}

async function assertEmpty(
  kv: StoreEngine<KvEngineOps>,
  blob: StoreEngine<BlobEngineOps>,
  where: string,
): Promise<void> {
  const [keys, meta] = await kv.batch(
    async (ops) =>
      [
        await ops.count(EMPTY, undefined),
        await ops.maps.range('meta', { start: EMPTY, end: undefined, limit: 1, reverse: false }),
      ] as const,
  );
  const blobs = await blob.batch(async (ops) => ops.ids(0, 1));
  if (keys > 0 || meta.length > 0 || blobs.length > 0) {
    throw failedPrecondition(`the destination ${where} is not empty; migrate copies into new, empty stores only`);
  }
}

/** Every blob id below `top`, a page per batch. */
async function* blobIds(engine: StoreEngine<BlobEngineOps>, top: number): AsyncGenerator<number> {
  for (let last = 0; last < top; ) {
    const after = last;
    const page = (await engine.batch(async (ops) => ops.ids(after, PAGE))).filter((id) => id < top);
    yield* page;
    if (page.length < PAGE) return;
    last = page[page.length - 1]!;
  }
}

export async function copyStores(from: StoreSpec, to: StoreSpec, options: OpenOptions = {}): Promise<CopyCounts> {
  // The source must exist; it is opened for writing only to read its next blob id (reserveId).
  from.backend.checkPath?.(from.kvStore, 'KV', true);
  from.backend.checkPath?.(from.blobStore, 'BLOB', true);
  const srcKv = await from.backend.openKv(from.kvStore, {});
  const srcBlob = await from.backend.openBlob(from.blobStore, {}).catch(async (err: unknown) => {
    await srcKv.close();
    throw err;
  });
  const opened: { close(): unknown }[] = [srcKv, srcBlob];
  try {
    const dstKv = await to.backend.openKv(to.kvStore, options);
    opened.push(dstKv);
    const dstBlob = await to.backend.openBlob(to.blobStore, options);
    opened.push(dstBlob);
    await assertEmpty(dstKv, dstBlob, `${to.kvStore} / ${to.blobStore}`);
    const counts: CopyCounts = { keys: 0, mapEntries: 0, blobs: 0 };

    // KV: the current records, then the maps (history, leases, counters and ids in `meta`).
    let start: Buffer = EMPTY;
    for (;;) {
      const page = await srcKv.batch(async (ops) =>
        ops.range({ start, end: undefined, limit: PAGE, reverse: false }, false),
      );
      if (page.length === 0) break;
      await dstKv.batch(async (ops) => {
        for (const r of page) await ops.put(r);
      });
      counts.keys += page.length;
      if (page.length < PAGE) break;
      start = after(page[page.length - 1]!.key);
    }
    const kvMaps = { from: (o: { maps: MapOps }) => o.maps, to: (o: { maps: MapOps }) => o.maps };
    for (const map of KV_MAPS) counts.mapEntries += await copyMap(srcKv, dstKv, kvMaps, map);
    for (const map of BLOB_MAPS) counts.mapEntries += await copyMap(srcBlob, dstBlob, kvMaps, map);

    // BLOB: every blob under its id; then the id counter, so no id the source handed out is reused.
    // (Reading the source's next id reserves it there: harmless, ids may have gaps.)
    const top = await srcBlob.batch(async (ops) => ops.reserveId());
    for await (const id of blobIds(srcBlob, top)) {
      const record = await srcBlob.batch(async (ops) => ops.get(id));
      if (record === undefined) continue;
      await dstBlob.batch(async (ops) => ops.insertWithId(id, record.data, record.metadata));
      counts.blobs++;
    }
    await dstBlob.batch(async (ops) => {
      await ops.insertWithId(top, EMPTY, null);
      await ops.delete(top);
    });
    return counts;
  } finally {
    for (const e of opened.reverse()) await e.close();
  }
}
