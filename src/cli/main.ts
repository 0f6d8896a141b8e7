#!/usr/bin/env node
import { createRequire } from 'node:module';
/**
 * The buffdb command line. Only the argument parser is loaded up front; each command imports what
 * it needs when it runs, so `buffdb kv get` never loads gRPC, the server or another backend.
 */
import { Command, type CommandUnknownOpts, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { PG_DIALECTS } from '../backends/backend.js';
import { BACKEND_NAMES, DEFAULT_BACKEND } from '../backends/index.js';
import { DEFAULT_ADDR, DEFAULT_BLOB_STORE, DEFAULT_KV_STORE, DEFAULT_MAX_MESSAGE_SIZE } from '../defaults.js';
import { CliError, describeError, EXIT, EXIT_CODES_HELP, exitCodeFor } from './exit-codes.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

const MAX_BLOB_ID = 2n ** 64n - 1n;

function parseSize(value: string): number {
  const m = /^(\d+)\s*([kmg]i?b?)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a size such as 67108864, 64MiB or 512KiB');
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Number(m[1]) * mult;
}

function parseBlobId(value: string): bigint {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('a blob id is a whole number, such as 1');
  const id = BigInt(value);
  if (id > MAX_BLOB_ID) throw new InvalidArgumentError(`a blob id is at most ${MAX_BLOB_ID}`);
  return id;
}

/** Commander hands a variadic argument's parser the list so far. */
function parseBlobIds(value: string, previous: bigint[] | undefined): bigint[] {
  return [...(previous ?? []), parseBlobId(value)];
}

/** The original buffdb's names for the parts of a blob. */
const PART_NAMES: Record<string, 'data' | 'metadata' | 'all'> = {
  data: 'data',
  bytes: 'data',
  blob: 'data',
  content: 'data',
  contents: 'data',
  metadata: 'metadata',
  meta: 'metadata',
  all: 'all',
  both: 'all',
};

function parsePart(value: string): 'data' | 'metadata' | 'all' {
  const part = PART_NAMES[value];
  if (!part) throw new InvalidArgumentError('expected data, metadata (meta) or all (both)');
  return part;
}

/**
 * `-s`/`-b` are accepted on the group (`buffdb kv -s FILE get K`) and after the subcommand
 * (`buffdb kv get K -s FILE`); `-b` also before the group. Only the outermost carries the default,
 * so the innermost value given wins.
 */
function resolveOption(cmd: CommandUnknownOpts, name: 'store' | 'backend', fallback: string): string {
  for (let c: CommandUnknownOpts | null = cmd; c; c = c.parent) {
    const value = (c.opts() as Record<string, unknown>)[name];
    if (typeof value === 'string') return value;
  }
  return fallback;
}

const kvTarget = (cmd: CommandUnknownOpts) => ({
  store: resolveOption(cmd, 'store', DEFAULT_KV_STORE),
  backend: resolveOption(cmd, 'backend', DEFAULT_BACKEND),
});
const blobTarget = (cmd: CommandUnknownOpts) => ({
  store: resolveOption(cmd, 'store', DEFAULT_BLOB_STORE),
  backend: resolveOption(cmd, 'backend', DEFAULT_BACKEND),
});

const backendOption = () =>
  new Option('-b, --backend <NAME>', `storage engine (default: ${DEFAULT_BACKEND})`).choices(BACKEND_NAMES);
/** After the subcommand there is no default of its own (the group's applies), so say it in words. */
const storeOption = (def?: string) => new Option('-s, --store <PATH>', `store file${def ? ` (default: ${def})` : ''}`);

const example = (...lines: string[]) =>
  `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  ${l}`).join('\n')}`;

function usageError(cmd: CommandUnknownOpts, message: string): never {
  cmd.error(message, { exitCode: EXIT.USAGE, code: 'buffdb.usage' });
}

/** A group (`buffdb`, `kv`, `blob`) given no or an unknown subcommand: one line, not a help page. */
function groupAction(cmd: CommandUnknownOpts): void {
  if (cmd.args.length > 0) {
    (cmd as unknown as { unknownCommand(): never }).unknownCommand();
  }
  const names = cmd.commands
    .filter((c) => c.name() !== 'help')
    .map((c) => c.name())
    .join(', ');
  usageError(cmd, `missing command: use one of ${names}`);
}

async function kvCommands() {
  return import('./kv-commands.js');
}
async function blobCommands() {
  return import('./blob-commands.js');
}

function buildKv(program: CommandUnknownOpts): void {
  const kv = program
    .command('kv')
    .description('work on the key-value store file directly (no server needed)')
    .addOption(storeOption().default(DEFAULT_KV_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb kv set greeting hello', 'buffdb kv -s other.db get greeting'));

  kv.command('get')
    .alias('fetch')
    .description(
      'print the value of KEY; for several keys, the values in order separated by NUL (\\0).\n' +
        'No newline is added unless stdout is a terminal, so the bytes are exactly the value.',
    )
    .argument('<KEY...>', 'key(s) to read')
    .addOption(storeOption(DEFAULT_KV_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb kv get greeting', 'buffdb kv get a b c | tr "\\0" "\\n"'))
    .action(async (keys, _opts, cmd) => {
      await (await kvCommands()).kvGet(kvTarget(cmd), keys);
    });

  kv.command('set')
    .aliases(['put', 'save', 'store'])
    .description('set KEY to VALUE, creating or replacing it (use -- before a value that starts with -)')
    .argument('<KEY>', 'key')
    .argument('<VALUE>', 'value')
    .addOption(storeOption(DEFAULT_KV_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb kv set greeting "hello world"', 'buffdb kv set offset -- -5'))
    .action(async (key, value, _opts, cmd) => {
      await (await kvCommands()).kvSet(kvTarget(cmd), key, value);
    });

  kv.command('delete')
    .aliases(['rm', 'remove'])
    .description('delete KEY (fails with status 3 if it does not exist)')
    .argument('<KEY>', 'key')
    .addOption(storeOption(DEFAULT_KV_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb kv delete greeting'))
    .action(async (key, _opts, cmd) => {
      await (await kvCommands()).kvDelete(kvTarget(cmd), key);
    });

  kv.command('eq')
    .aliases(['equal', 'equals'])
    .description('exit 0 if the values of all KEYs are equal, 1 if any two differ')
    .argument('<KEY...>', 'keys to compare')
    .addOption(storeOption(DEFAULT_KV_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb kv eq a b && echo same'))
    .action(async (keys, _opts, cmd) => {
      if (!(await (await kvCommands()).kvCompare(kvTarget(cmd), keys, 'eq'))) process.exitCode = EXIT.FALSE;
    });

  kv.command('not-eq')
    .aliases(['unique', 'ne', 'neq'])
    .description('exit 0 if the values of all KEYs are pairwise different, 1 if any two are equal')
    .argument('<KEY...>', 'keys to compare')
    .addOption(storeOption(DEFAULT_KV_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb kv not-eq a b c && echo all different'))
    .action(async (keys, _opts, cmd) => {
      if (!(await (await kvCommands()).kvCompare(kvTarget(cmd), keys, 'not-eq'))) process.exitCode = EXIT.FALSE;
    });

  kv.helpCommand(true)
    .allowExcessArguments()
    .action((_opts, cmd) => groupAction(cmd));
}

function buildBlob(program: CommandUnknownOpts): void {
  const blob = program
    .command('blob')
    .description('work on the BLOB store file directly (no server needed)')
    .addOption(storeOption().default(DEFAULT_BLOB_STORE))
    .addOption(backendOption())
    .addHelpText(
      'after',
      example('id=$(buffdb blob store photo.jpg "image/jpeg")', 'buffdb blob -s other.db get "$id" > copy.jpg'),
    );

  blob
    .command('get')
    .alias('fetch')
    .description(
      'write blob ID to stdout: its data byte for byte (default), its metadata, or all\n' +
        '(metadata, NUL, data). Metadata gets a newline only when stdout is a terminal; null metadata prints nothing.',
    )
    .argument('<ID>', 'blob id', parseBlobId)
    .argument('[PART]', 'data (default), metadata (meta) or all (both)', parsePart)
    .addOption(storeOption(DEFAULT_BLOB_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb blob get 1 > photo.jpg', 'buffdb blob get 1 metadata'))
    .action(async (id, part, _opts, cmd) => {
      await (await blobCommands()).blobGet(blobTarget(cmd), id, part ?? 'data');
    });

  blob
    .command('store')
    .aliases(['put', 'save', 'set'])
    .description('store FILE (- reads stdin) as a new blob with optional METADATA; prints the new id')
    .argument('<FILE>', 'file to store, or - for stdin')
    .argument('[METADATA]', 'metadata text (omitted: null; "" is an empty string)')
    .addOption(storeOption(DEFAULT_BLOB_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb blob store photo.jpg "image/jpeg"', 'tar c dir | buffdb blob store -'))
    .action(async (file, metadata, _opts, cmd) => {
      await (await blobCommands()).blobStore(blobTarget(cmd), file, metadata);
    });

  blob
    .command('update')
    .description('replace the data, the metadata, or both of blob ID')
    .argument('<ID>', 'blob id', parseBlobId)
    .argument('<PART>', 'data, metadata (meta) or all (both)', parsePart)
    .argument('[FILE|METADATA]', 'FILE (- for stdin) for data and all; METADATA for metadata')
    .argument('[METADATA]', 'METADATA for all')
    .addOption(storeOption(DEFAULT_BLOB_STORE))
    .addOption(backendOption())
    .addHelpText(
      'after',
      `
Forms:
  update ID data FILE|-            replace the data, keep the metadata
  update ID metadata [METADATA]    replace the metadata; omitted = null (the one write that
                                   succeeds even if ID does not exist)
  update ID all FILE|- [METADATA]  replace both; omitted METADATA = null
${example(
  'buffdb blob update 1 data new.jpg',
  'buffdb blob update 1 metadata "image/png"',
  'cat new.png | buffdb blob update 1 all - "image/png"',
)}`,
    )
    .action(async (id, part, arg1, arg2, _opts, cmd) => {
      let file: string | undefined;
      let metadata: string | undefined;
      if (part === 'metadata') {
        if (arg2 !== undefined) usageError(cmd, `too many arguments: update ID metadata takes at most one METADATA`);
        metadata = arg1;
      } else {
        if (arg1 === undefined) usageError(cmd, `missing FILE: update ID ${part} needs a file, or - for stdin`);
        if (part === 'data' && arg2 !== undefined) {
          usageError(cmd, 'too many arguments: update ID data takes only FILE (use "all" to set metadata too)');
        }
        file = arg1;
        metadata = arg2;
      }
      await (await blobCommands()).blobUpdate(blobTarget(cmd), id, part, file, metadata);
    });

  blob
    .command('delete')
    .aliases(['rm', 'remove'])
    .description('delete blob ID (fails with status 3 if it does not exist)')
    .argument('<ID>', 'blob id', parseBlobId)
    .addOption(storeOption(DEFAULT_BLOB_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb blob delete 1'))
    .action(async (id, _opts, cmd) => {
      await (await blobCommands()).blobDelete(blobTarget(cmd), id);
    });

  blob
    .command('eq-data')
    .aliases(['equal', 'equals'])
    .description('exit 0 if the data of all blobs are equal, 1 if any two differ')
    .argument('<ID...>', 'blob ids', parseBlobIds)
    .addOption(storeOption(DEFAULT_BLOB_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb blob eq-data 1 2 && echo same'))
    .action(async (ids, _opts, cmd) => {
      if (!(await (await blobCommands()).blobCompare(blobTarget(cmd), ids, 'eq'))) process.exitCode = EXIT.FALSE;
    });

  blob
    .command('not-eq-data')
    .aliases(['unique', 'ne', 'neq'])
    .description('exit 0 if the data of all blobs are pairwise different, 1 if any two are equal')
    .argument('<ID...>', 'blob ids', parseBlobIds)
    .addOption(storeOption(DEFAULT_BLOB_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb blob not-eq-data 1 2 3 && echo all different'))
    .action(async (ids, _opts, cmd) => {
      if (!(await (await blobCommands()).blobCompare(blobTarget(cmd), ids, 'not-eq'))) process.exitCode = EXIT.FALSE;
    });

  blob
    .helpCommand(true)
    .allowExcessArguments()
    .action((_opts, cmd) => groupAction(cmd));
}

function buildRun(program: CommandUnknownOpts): void {
  program
    .command('run')
    .alias('serve')
    .description('start the gRPC server (Kv, Blob and Query services); stops cleanly on SIGINT/SIGTERM')
    .argument('[ADDR]', `address to listen on (default: ${DEFAULT_ADDR})`)
    .option('--addr <ADDR>', 'address to listen on', DEFAULT_ADDR)
    .option('--kv-store <PATH>', 'KV store file (postgres: a postgres://… URL)', DEFAULT_KV_STORE)
    .option('--blob-store <PATH>', 'BLOB store file (postgres: a postgres://… URL)', DEFAULT_BLOB_STORE)
    .addOption(backendOption())
    .option('--max-message-size <SIZE>', 'largest gRPC message accepted or sent', parseSize, DEFAULT_MAX_MESSAGE_SIZE)
    .addOption(
      new Option(
        '--durability <MODE>',
        'full: fsync every commit (survives power loss); normal: survives a process crash',
      )
        .choices(['full', 'normal'] as const)
        .default('full' as const),
    )
    .option('--read-only', 'serve reads only; writes fail with FAILED_PRECONDITION', false)
    .option(
      '--transaction-timeout <MS>',
      'roll back a transaction left open this long (BeginTransaction timeout_ms overrides)',
      parseMilliseconds,
      30_000,
    )
    .option('--wait-for-db', 'stores on a database server (postgres): wait for it at start instead of exiting', false)
    .option('--sql-timeout <MS>', 'cancel raw SQL statements running longer (postgres)', parseMilliseconds, 30_000)
    .addOption(
      new Option('--pg-dialect <NAME>', 'the PostgreSQL-compatible server behind a postgres:// store')
        .choices(PG_DIALECTS)
        .default('postgres' as const),
    )
    .addHelpText(
      'after',
      example(
        'buffdb run [::1]:50051 --kv-store kv_store.db --blob-store blob_store.db',
        'buffdb -b postgres run --kv-store postgres://buffdb@db:5432/app --blob-store postgres://buffdb@db:5432/app',
      ),
    )
    .action(async (addrArg, opts, cmd) => {
      const { runServer } = await import('./run-command.js');
      await runServer({
        addr: addrArg ?? opts.addr,
        kvStore: opts.kvStore,
        blobStore: opts.blobStore,
        backend: resolveOption(cmd, 'backend', DEFAULT_BACKEND),
        maxMessageSize: opts.maxMessageSize,
        durability: opts.durability,
        readOnly: opts.readOnly,
        transactionTimeoutMs: opts.transactionTimeout,
        waitForDb: opts.waitForDb,
        sqlTimeoutMs: opts.sqlTimeout,
        pgDialect: opts.pgDialect,
      });
    });
}

function buildMigrate(program: CommandUnknownOpts): void {
  program
    .command('migrate')
    .description(
      'copy a KV and a BLOB store to another backend: keys with their revisions, history and leases, blobs with their ids.\n' +
        'The destination must be empty; stop writers of the source first.',
    )
    .requiredOption('--from <SPEC>', 'BACKEND:KV_STORE,BLOB_STORE (sqlite:kv.db,blob.db), or a postgres:// URL')
    .requiredOption('--to <SPEC>', 'the same form; a postgres:// URL holds both stores (a schema each)')
    .addHelpText(
      'after',
      example(
        'buffdb migrate --from sqlite:kv_store.db,blob_store.db --to postgres://buffdb@db:5432/app',
        'buffdb migrate --from postgres://buffdb@db:5432/app --to sqlite:kv.db,blob.db',
      ),
    )
    .action(async (opts) => {
      const { migrate } = await import('./migrate-command.js');
      await migrate(opts.from, opts.to, (line) => process.stderr.write(`buffdb: ${line}\n`));
    });
}

function parseMilliseconds(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError('expected a positive whole number of milliseconds');
  return n;
}

/** Errors from the parser (and usageError) as one line naming the command, then the help hint. */
function oneLineErrors(cmd: CommandUnknownOpts, path: string): void {
  cmd.configureOutput({
    outputError: (str, write) => {
      const message = str
        .replace(/^error: /, '')
        .replace(/\s*\n\s*/g, ' ')
        .trim();
      write(`buffdb: ${message} (see '${path} --help')\n`);
    },
  });
  for (const sub of cmd.commands) oneLineErrors(sub, `${path} ${sub.name()}`);
}

export function buildProgram(): CommandUnknownOpts {
  const program = new Command('buffdb')
    .description('buffdb: a persistence layer for gRPC — key-value, BLOB and raw-SQL services on embedded storage')
    .version(version, '-V, --version')
    .addOption(new Option('-b, --backend <NAME>', 'storage engine').choices(BACKEND_NAMES).default(DEFAULT_BACKEND))
    // Options belong to the command they follow, so `--` protects a value like -5 at every level.
    .enablePositionalOptions()
    .exitOverride()
    .addHelpText(
      'after',
      `${example(
        'buffdb run',
        'buffdb kv set greeting hello && buffdb kv get greeting',
        'buffdb blob store photo.jpg "image/jpeg"',
        'buffdb kv -s other.db get greeting -b sqlite',
      )}\n${EXIT_CODES_HELP}`,
    ) as unknown as CommandUnknownOpts;
  buildRun(program);
  buildMigrate(program);
  buildKv(program);
  buildBlob(program);
  program
    .helpCommand(true)
    .allowExcessArguments()
    .action(function (this: CommandUnknownOpts) {
      groupAction(this);
    });
  oneLineErrors(program, 'buffdb');
  return program;
}

function fail(err: unknown): void {
  process.stderr.write(`buffdb: ${describeError(err)}\n`);
  process.exitCode = exitCodeFor(err);
}

async function main(): Promise<void> {
  // Last resort: whatever escapes is still one line and a documented status, never a stack trace.
  const fatal = (err: unknown): void => {
    fail(err);
    process.exit();
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
  // A reader that closed its end early (`buffdb blob get 1 | head -c 10`) is no error worth a message.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit();
    fatal(new CliError(EXIT.FAILURE, `cannot write to stdout: ${err.message}`));
  });

  try {
    await buildProgram().parseAsync(process.argv);
  } catch (err) {
    const e = err as { code?: unknown; exitCode?: unknown };
    if (typeof e.code === 'string' && (e.code.startsWith('commander.') || e.code === 'buffdb.usage')) {
      // Commander has printed the message (or the help / version). Help and version exit 0.
      process.exitCode = e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
      return;
    }
    fail(err);
  }
}

await main();
