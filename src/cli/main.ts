#!/usr/bin/env node
import { createRequire } from 'node:module';
/**
 * The buffdb command line. Only the argument parser is loaded up front; each command imports what
 * it needs when it runs, so `buffdb kv get` never loads gRPC, the server or another backend.
 */
import { Command, type CommandUnknownOpts, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { BACKEND_NAMES, DEFAULT_BACKEND } from '../backends/index.js';
import { DEFAULT_BLOB_STORE, DEFAULT_KV_STORE } from '../defaults.js';
import { buildAuth } from './auth-commands.js';
import {
  addRemoteOptions,
  backendOption,
  example,
  groupAction,
  parseMilliseconds,
  parseWholeNumber,
  remoteTarget,
  resolveOption,
  storeOption,
  usageError,
} from './command-kit.js';
import { CliError, describeError, EXIT, EXIT_CODES_HELP, exitCodeFor } from './exit-codes.js';
import { buildBackup, buildMigrate, buildRun } from './server-commands.js';
import { buildSync } from './sync-commands.js';

const require = createRequire(import.meta.url);
const { version } = require('../../package.json') as { version: string };

const MAX_BLOB_ID = 2n ** 64n - 1n;

function parseBlobId(value: string): bigint {
  if (!/^\d+$/.test(value)) throw new InvalidArgumentError('a blob id is a whole number, such as 1');
  const id = BigInt(value);
  if (id > MAX_BLOB_ID) throw new InvalidArgumentError(`a blob id is at most ${MAX_BLOB_ID}`);
  return id;
}

/** `OFFSET:LENGTH`, `OFFSET:` or `OFFSET` (LENGTH omitted: to the end). */
function parseRange(value: string): { offset: number; length: number | undefined } {
  const m = /^(\d+)(?::(\d*))?$/.exec(value);
  const offset = m ? Number(m[1]) : Number.NaN;
  const length = m?.[2] ? Number(m[2]) : undefined;
  if (!Number.isSafeInteger(offset) || (length !== undefined && !Number.isSafeInteger(length))) {
    throw new InvalidArgumentError('a range is OFFSET:LENGTH in bytes, such as 0:1024 (LENGTH omitted: to the end)');
  }
  return { offset, length };
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

const kvTarget = (cmd: CommandUnknownOpts) => ({
  store: resolveOption(cmd, 'store', DEFAULT_KV_STORE),
  backend: resolveOption(cmd, 'backend', DEFAULT_BACKEND),
  remote: remoteTarget(cmd),
});
const blobTarget = (cmd: CommandUnknownOpts) => ({
  store: resolveOption(cmd, 'store', DEFAULT_BLOB_STORE),
  backend: resolveOption(cmd, 'backend', DEFAULT_BACKEND),
  remote: remoteTarget(cmd),
});

async function kvEtcdCommands() {
  return import('./kv-etcd-commands.js');
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
    .description('work on the key-value store file directly (no server needed), or on a server with --addr')
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
    .option('--ttl <SECONDS>', 'delete the key after this many seconds (an etcd lease; at least 2)', parseWholeNumber)
    .addHelpText(
      'after',
      example(
        'buffdb kv set greeting "hello world"',
        'buffdb kv set offset -- -5',
        'buffdb kv set session abc --ttl 60',
      ),
    )
    .action(async (key, value, opts, cmd) => {
      if (opts.ttl === undefined) return (await kvCommands()).kvSet(kvTarget(cmd), key, value);
      const ttl = opts.ttl;
      const m = await kvEtcdCommands();
      await m.withKvApi(kvTarget(cmd), false, (api) => m.kvSetWithTtl(api, key, value, ttl));
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

  kv.command('list')
    .alias('ls')
    .description('print the keys starting with PREFIX (all keys without one) in byte order: KEY, tab, VALUE per line')
    .argument('[PREFIX]', 'key prefix', '')
    .option('--keys-only', 'print only the keys, one per line', false)
    .option('--limit <N>', 'print at most N keys', parseWholeNumber, 0)
    .option('--json', 'one JSON object per line: key, value, revisions, version, lease', false)
    .addOption(storeOption(DEFAULT_KV_STORE))
    .addOption(backendOption())
    .addHelpText(
      'after',
      example('buffdb kv list user/', 'buffdb kv list --keys-only --limit 10', 'buffdb kv list --json'),
    )
    .action(async (prefix, opts, cmd) => {
      const m = await kvEtcdCommands();
      await m.withKvApi(kvTarget(cmd), false, (api) => m.kvList(api, prefix, opts));
    });

  kv.command('watch')
    .description(
      'print one line per change to keys starting with PREFIX ("" for all) until interrupted:\n' +
        "PUT, tab, KEY, tab, VALUE or DELETE, tab, KEY. On a store file, other processes' writes are polled for.",
    )
    .argument('<PREFIX>', 'key prefix')
    .option('--rev <REVISION>', 'first replay the history from this revision', parseWholeNumber, 0)
    .option('--json', 'one JSON object per line: type, key, value, revision', false)
    .option('--interval <MS>', 'how often a store file is polled', parseMilliseconds, 250)
    .addOption(storeOption(DEFAULT_KV_STORE))
    .addOption(backendOption())
    .addHelpText('after', example('buffdb kv watch user/', 'buffdb kv watch "" --rev 1 --json'))
    .action(async (prefix, opts, cmd) => {
      const m = await kvEtcdCommands();
      const stop = new AbortController();
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => stop.abort());
      await m.withKvApi(kvTarget(cmd), true, (api) =>
        m.kvWatch(api, prefix, { json: opts.json, rev: opts.rev, pollMs: opts.interval }, stop.signal),
      );
    });

  addRemoteOptions(kv);
  kv.helpCommand(true)
    .allowExcessArguments()
    .action((_opts, cmd) => groupAction(cmd));
}

function buildBlob(program: CommandUnknownOpts): void {
  const blob = program
    .command('blob')
    .description('work on the BLOB store file directly (no server needed), or on a server with --addr')
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
    .option(
      '--range <OFFSET:LENGTH>',
      'only LENGTH bytes of the data from byte OFFSET (LENGTH omitted: to the end; clamped to the blob)',
      parseRange,
    )
    .addOption(storeOption(DEFAULT_BLOB_STORE))
    .addOption(backendOption())
    .addHelpText(
      'after',
      example('buffdb blob get 1 > photo.jpg', 'buffdb blob get 1 metadata', 'buffdb blob get 1 --range 1048576:4096'),
    )
    .action(async (id, part, opts, cmd) => {
      if (opts.range !== undefined && part === 'metadata')
        usageError(cmd, '--range selects bytes of the data, not of the metadata');
      await (await blobCommands()).blobGet(blobTarget(cmd), id, part ?? 'data', opts.range);
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

  addRemoteOptions(blob);
  blob
    .helpCommand(true)
    .allowExcessArguments()
    .action((_opts, cmd) => groupAction(cmd));
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
  buildAuth(program);
  buildBackup(program);
  buildSync(program);
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
