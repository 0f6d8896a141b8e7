/**
 * `buffdb restore`: turns a backup archive back into store files. The archive is checked while it
 * is unpacked into a staging directory beside each target; only a complete, intact archive is
 * moved into place, and existing stores are never overwritten. The restored stores are then
 * opened once, so a restore that succeeds leaves stores the server can open.
 */
import { mkdir, mkdtemp, open, readdir, rename, rm } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { type ArchiveInfo, readArchive } from './archive.js';
import type { StoreName } from './snapshot.js';

/** Files a store at `path` consists of (the file and what its engine keeps beside it), if any exist. */
async function existingStoreFiles(path: string): Promise<string[]> {
  const name = basename(path);
  try {
    return (await readdir(dirname(resolve(path)))).filter(
      (n) => n === name || n.startsWith(`${name}-`) || n.startsWith(`${name}.`),
    );
  } catch {
    return [];
  }
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } catch {
    // Not every platform can fsync a directory; the renames are still atomic.
  } finally {
    await fh.close();
  }
}

export interface RestoreTargets {
  kv: string;
  blob: string;
}

/** Restores `archive` into new store files at `targets`; answers what the archive held. */
export async function restoreBackup(archive: string, targets: RestoreTargets): Promise<ArchiveInfo> {
  if (resolve(targets.kv) === resolve(targets.blob)) {
    throw new Error(`the KV store and the BLOB store must be different files (both are ${targets.kv})`);
  }
  for (const [label, path] of [
    ['KV', targets.kv],
    ['BLOB', targets.blob],
  ] as const) {
    const found = await existingStoreFiles(path);
    if (found.length > 0) {
      throw new Error(
        `the ${label} store ${path} already exists (${found.join(', ')}); restore writes new stores only: move it away first`,
      );
    }
  }
  const staging: Record<StoreName, string> = {
    kv: await mkdtemp(join(dirname(resolve(targets.kv)), '.buffdb-restore-')),
    blob: await mkdtemp(join(dirname(resolve(targets.blob)), '.buffdb-restore-')),
  };
  const cleanup = () => Promise.all(Object.values(staging).map((d) => rm(d, { recursive: true, force: true })));
  let info: ArchiveInfo;
  try {
    let current: Awaited<ReturnType<typeof open>> | undefined;
    info = await readArchive(archive, async (file, chunk) => {
      if (!current) {
        const path = join(staging[file.store], `store${file.name}`);
        await mkdir(dirname(path), { recursive: true });
        current = await open(path, 'wx');
      }
      if (chunk) {
        await current.write(chunk);
      } else {
        await current.sync();
        await current.close();
        current = undefined;
      }
    }).finally(() => current?.close());
    // Complete and intact: move each store's top-level entries into place.
    for (const store of ['kv', 'blob'] as const) {
      const target = resolve(targets[store]);
      for (const entry of await readdir(staging[store])) {
        await rename(join(staging[store], entry), `${target}${entry.slice('store'.length)}`);
      }
      await fsyncDir(dirname(target));
    }
  } finally {
    await cleanup();
  }
  return info;
}
