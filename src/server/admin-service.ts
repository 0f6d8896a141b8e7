/** buffdb.admin.Admin: online backup (src/backup), streamed to the caller as an archive. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ServerWritableStream, ServiceError, UntypedServiceImplementation } from '@grpc/grpc-js';
import { status } from '@grpc/grpc-js';
import { archiveChunks } from '../backup/archive.js';
import { takeSnapshot } from '../backup/snapshot.js';
import type { BackupChunk, BackupRequest } from '../generated/admin.js';
import type { BuffDb } from '../store/buffdb.js';
import { writable } from './query-service.js';
import { toServiceError } from './stream-handler.js';

export interface AdminOptions {
  /** Where the copies are made before they are streamed (default: the system temp directory). */
  workDir?: string;
}

export function adminService(db: BuffDb, options: AdminOptions = {}): UntypedServiceImplementation {
  let backupRunning = false;
  return {
    backup: async (call: ServerWritableStream<BackupRequest, BackupChunk>) => {
      if (backupRunning) {
        const details = 'a backup is already running; retry when it has finished';
        call.emit('error', { code: status.UNAVAILABLE, details } as Partial<ServiceError>);
        return;
      }
      backupRunning = true;
      let dir: string | undefined;
      try {
        dir = await mkdtemp(join(options.workDir ?? tmpdir(), '.buffdb-backup-'));
        const snapshot = await takeSnapshot(db, dir);
        for await (const data of archiveChunks(snapshot.backend, snapshot.files)) {
          if (call.cancelled) return;
          if (!call.write({ data })) await writable(call);
        }
        call.end();
      } catch (err) {
        if (!call.cancelled) call.emit('error', toServiceError(err));
      } finally {
        backupRunning = false;
        if (dir) await rm(dir, { recursive: true, force: true });
      }
    },
  };
}
