#!/usr/bin/env node
/** The buffdb command line. Each command imports only what it needs, so start-up stays fast. */
import { Command, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { createRequire } from 'node:module';
import { DEFAULT_BACKEND, BACKEND_NAMES } from '../backends/index.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

const DEFAULT_ADDR = '[::1]:50051';

function parseSize(value: string): number {
  const m = /^(\d+)\s*([kmg]i?b?)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a size such as 67108864, 64MiB or 512KiB');
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Number(m[1]) * mult;
}

export function buildProgram(): Command {
  const program = new Command('buffdb')
    .description('buffdb: a persistence layer for gRPC — key-value, BLOB and raw-SQL services on embedded storage')
    .version(version, '-V, --version')
    .addOption(new Option('-b, --backend <NAME>', 'storage engine').choices(BACKEND_NAMES).default(DEFAULT_BACKEND))
    .showHelpAfterError('(run buffdb help for usage)');

  program.command('run').alias('serve')
    .description('start the gRPC server (Kv, Blob and Query services)')
    .argument('[ADDR]', 'address to listen on')
    .option('--addr <ADDR>', 'address to listen on', DEFAULT_ADDR)
    .option('--kv-store <PATH>', 'KV store file', 'kv_store.db')
    .option('--blob-store <PATH>', 'BLOB store file', 'blob_store.db')
    .addOption(new Option('-b, --backend <NAME>', 'storage engine').choices(BACKEND_NAMES))
    .option('--max-message-size <SIZE>', 'largest gRPC message accepted or sent', parseSize, 64 * 1024 * 1024)
    .addOption(new Option('--durability <MODE>', 'full: fsync every commit (survives power loss); normal: survives a process crash')
      .choices(['full', 'normal'] as const).default('full' as const))
    .option('--read-only', 'serve reads only; writes fail with FAILED_PRECONDITION', false)
    .addHelpText('after', '\nExample:\n  buffdb run [::1]:50051 --kv-store kv_store.db --blob-store blob_store.db')
    .action(async (addrArg, opts, cmd) => {
      const { runServer } = await import('./run-command.js');
      const globals = cmd.optsWithGlobals() as { backend?: string };
      await runServer({
        addr: addrArg ?? opts.addr,
        kvStore: opts.kvStore,
        blobStore: opts.blobStore,
        backend: opts.backend ?? globals.backend ?? DEFAULT_BACKEND,
        maxMessageSize: opts.maxMessageSize,
        durability: opts.durability,
        readOnly: opts.readOnly,
      });
    });

  return program as unknown as Command;
}

async function main(): Promise<void> {
  const program = buildProgram();
  program.exitOverride();
  try {
    await program.parseAsync(process.argv);
  } catch (err) {
    const e = err as { code?: string; exitCode?: number; message?: string };
    if (typeof e.code === 'string' && e.code.startsWith('commander.')) {
      // Help and version exit 0; usage errors exit 2 (commander already printed the message).
      process.exit(e.exitCode === 0 ? 0 : 2);
    }
    process.stderr.write(`buffdb: ${e.message ?? String(err)}\n`);
    process.exit(3);
  }
}

await main();
