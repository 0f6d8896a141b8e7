/** `buffdb run`: open the stores, serve Kv, Blob and Query, stop cleanly on SIGINT/SIGTERM. */
import type { Durability } from '../backends/backend.js';
import { BuffDb } from '../store/buffdb.js';
import { startServer } from '../server/server.js';

export interface RunOptions {
  addr: string;
  kvStore: string;
  blobStore: string;
  backend: string;
  maxMessageSize: number;
  durability: Durability;
  readOnly: boolean;
}

export async function runServer(options: RunOptions): Promise<void> {
  const db = await BuffDb.open({
    backend: options.backend,
    kvStore: options.kvStore,
    blobStore: options.blobStore,
    durability: options.durability,
    readOnly: options.readOnly,
  });
  let running;
  try {
    running = await startServer(db, { addr: options.addr, maxMessageSize: options.maxMessageSize });
  } catch (err) {
    await db.close();
    throw new Error(`cannot listen on ${options.addr}: ${(err as Error).message}`);
  }
  const log = (msg: string): void => { process.stderr.write(`${new Date().toISOString()} buffdb: ${msg}\n`); };
  log(`listening on ${running.addr} (backend ${options.backend}, kv ${options.kvStore}, blob ${options.blobStore}`
    + `${options.readOnly ? ', read-only' : ''})`);
  // Machine-readable line on stdout, for scripts and tests that start the server on port 0.
  process.stdout.write(`listening on ${running.addr}\n`);

  let signals = 0;
  const stop = (signal: string): void => {
    signals++;
    if (signals > 1) {
      log(`${signal} again: exiting now`);
      process.exit(130);
    }
    log(`${signal}: finishing in-flight streams, then exiting (send again to force)`);
    running.shutdown().then(() => {
      log('stopped; every acknowledged write is committed');
      process.exit(0);
    }, (err: unknown) => {
      log(`shutdown failed: ${(err as Error).message}`);
      process.exit(1);
    });
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}
