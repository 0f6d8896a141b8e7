/**
 * `buffdb backup --addr HOST:PORT OUT` and `buffdb restore BACKUP`: an online backup of a running
 * server into a new file, checked before it is given its name; and its restoration as new store
 * files (src/backup).
 */
import { open, rename, rm, stat } from 'node:fs/promises';
import type { ServiceError } from '@grpc/grpc-js';
import { readArchive } from '../backup/archive.js';
import { restoreBackup } from '../backup/restore.js';
import { DEFAULT_MAX_MESSAGE_SIZE } from '../defaults.js';
import { AdminClient, type BackupChunk } from '../generated/admin.js';
import { BuffDb } from '../store/buffdb.js';
import { CliError, EXIT } from './exit-codes.js';
import { channelCredentials, toCliError, tokenMetadata } from './remote.js';
import type { RemoteTarget } from './store-access.js';

/** Streams a backup from the server into OUT.partial, checks it, then renames it to OUT. */
export async function backup(target: RemoteTarget, out: string): Promise<void> {
  if (await stat(out).catch(() => undefined)) {
    throw new CliError(EXIT.FAILURE, `${out} already exists; a backup is written to a new path`);
  }
  const partial = `${out}.partial`;
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(partial, 'wx');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new CliError(
      EXIT.FAILURE,
      e.code === 'EEXIST'
        ? `${partial} exists: another backup to ${out} is running, or one was interrupted (then remove it)`
        : `cannot create ${partial}: ${e.message}`,
    );
  }
  const client = new AdminClient(target.addr, channelCredentials(target), {
    'grpc.max_receive_message_length': DEFAULT_MAX_MESSAGE_SIZE,
  });
  let complete = false;
  try {
    const call = client.backup({}, tokenMetadata(target));
    try {
      for await (const chunk of call as AsyncIterable<BackupChunk>) await fh.write(chunk.data);
    } catch (err) {
      const e = err as ServiceError;
      throw typeof e.code === 'number' ? toCliError(e, target.addr, target.token !== undefined) : err;
    }
    await fh.sync();
    await fh.close();
    try {
      await readArchive(partial);
    } catch (err) {
      throw new CliError(EXIT.FAILURE, `the backup received is not intact: ${(err as Error).message}`);
    }
    await rename(partial, out);
    complete = true;
  } finally {
    client.close();
    await fh.close().catch(() => {});
    if (!complete) await rm(partial, { force: true });
  }
}

/** Restores BACKUP as new store files, then opens them once to be sure the server can. */
export async function restore(archive: string, kvStore: string, blobStore: string): Promise<void> {
  const info = await restoreBackup(archive, { kv: kvStore, blob: blobStore });
  try {
    const db = await BuffDb.open({ backend: info.backend, kvStore, blobStore });
    await db.close();
  } catch (err) {
    throw new Error(`the backup was restored but the ${info.backend} stores do not open: ${(err as Error).message}`);
  }
}
