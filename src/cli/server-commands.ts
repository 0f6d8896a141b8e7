/**
 * The commands around the server: `run` (with its settings from flags, environment and config
 * file), `backup` and `restore` (`auth`: auth-commands.ts). Each imports its implementation when it runs.
 */
import { type CommandUnknownOpts, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { DEFAULT_ETCD_TOKEN_TTL_MS } from '../auth/simple-tokens.js';
import { PG_DIALECTS, type PgDialect } from '../backends/backend.js';
import { DEFAULT_BACKEND } from '../backends/index.js';
import {
  DEFAULT_ADDR,
  DEFAULT_BLOB_STORE,
  DEFAULT_ETCD_MAX_REQUEST_BYTES,
  DEFAULT_HEAP_GROWTH_PERCENT,
  DEFAULT_KV_STORE,
  DEFAULT_MAX_MESSAGE_SIZE,
  DEFAULT_MEMORY_BUDGET,
  DEFAULT_SYNC_MAX_OFFLINE_MS,
  DEFAULT_YOUNG_HEAP_MIB,
} from '../defaults.js';
import {
  addRemoteOptions,
  backendOption,
  collect,
  example,
  parseMilliseconds,
  parseSize,
  parseWholeNumber,
  remoteTarget,
  usageError,
} from './command-kit.js';
import { type AutoCompactSetting, parseAutoCompact, parseDuration } from './etcd-options.js';
import { applyEnvAndConfig, describeEnv, readConfigFile } from './run-settings.js';

/** A size above zero (`--memory-budget`). */
function parsePositiveSize(value: string): number {
  const n = parseSize(value);
  if (n <= 0) throw new InvalidArgumentError('expected a size above zero, such as 256MiB');
  return n;
}

/** A whole number from 0 to `max`, else `message` (`--heap-growth`, `--young-heap`). */
function wholeUpTo(max: number, message: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\s*\d+\s*$/.test(value) || n > max) throw new InvalidArgumentError(message);
    return n;
  };
}

/** `--upload-ttl`, `--etcd-auth-token-ttl`: whole seconds (`3600`) or a duration (`30m`, `1h`), in milliseconds. */
function parseTtl(value: string): number {
  const text = value.trim();
  const ms = /^\d+$/.test(text) ? Number(text) * 1000 : parseDuration(text);
  if (ms === undefined || !Number.isSafeInteger(ms) || ms <= 0) {
    throw new InvalidArgumentError('expected seconds (3600) or a duration such as 30m or 1h');
  }
  return ms;
}

function parseAutoCompactFlag(value: string): AutoCompactSetting {
  try {
    return parseAutoCompact(value);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
}

export function buildBackup(program: CommandUnknownOpts): void {
  const backup = program
    .command('backup')
    .description(
      'copy both stores of a running server, at one point in time, into the new file OUT; the server keeps\n' +
        'serving meanwhile. Every write acknowledged before the backup began is in it. The file is checked\n' +
        '(checksums) before it gets its name.',
    )
    .argument('<OUT>', 'the backup file to create (must not exist)')
    .addHelpText(
      'after',
      example(
        'buffdb backup --addr [::1]:50051 backup-2026-01-01.buffdb',
        'buffdb backup --addr db.example:50051 --tls-ca ca.pem --token "$TOKEN" nightly.buffdb',
      ),
    )
    .action(async (out, _opts, cmd) => {
      const remote = remoteTarget(cmd);
      if (!remote) usageError(cmd, 'missing --addr: the server to back up (or BUFFDB_ADDR)');
      await (await import('./backup-command.js')).backup(remote, out);
    });
  addRemoteOptions(backup, false);
  program
    .command('restore')
    .description(
      'turn a backup into store files at --kv-store and --blob-store (which must not exist), for the\n' +
        'backend it was made with. A damaged or truncated backup is refused and nothing is written.',
    )
    .argument('<BACKUP>', 'a file made by buffdb backup')
    .option('--kv-store <PATH>', 'KV store file to create', DEFAULT_KV_STORE)
    .option('--blob-store <PATH>', 'BLOB store file to create', DEFAULT_BLOB_STORE)
    .addHelpText('after', example('buffdb restore nightly.buffdb --kv-store kv_store.db --blob-store blob_store.db'))
    .action(async (archive, opts) => {
      await (await import('./backup-command.js')).restore(archive, opts.kvStore, opts.blobStore);
    });
}

/** pino's levels (named here so the CLI does not load pino before `run`). */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export function buildRun(program: CommandUnknownOpts): void {
  const run = program
    .command('run')
    .alias('serve')
    .description(
      'start the gRPC server (Kv, Blob, Query, Admin, the etcd v3 API, health, reflection); stops cleanly on SIGINT/SIGTERM, ' +
        'reloads TLS certificates and the auth file on SIGHUP',
    )
    .addHelpText(
      'after',
      '\nEvery flag can also come from the environment (BUFFDB_ + the flag in upper snake case, shown\n' +
        'above) or a TOML config file (--config; keys named after the flags). A flag beats the environment,\n' +
        'which beats the file.',
    )
    .argument('[ADDR]', `address to listen on (default: ${DEFAULT_ADDR})`)
    .option('--addr <ADDR>', 'address to listen on', DEFAULT_ADDR)
    .option('--kv-store <PATH>', 'KV store file', DEFAULT_KV_STORE)
    .option('--blob-store <PATH>', 'BLOB store file', DEFAULT_BLOB_STORE)
    .addOption(backendOption())
    .addOption(
      new Option('--max-message-size <SIZE>', 'largest gRPC message accepted or sent')
        .argParser(parseSize)
        .default(DEFAULT_MAX_MESSAGE_SIZE, '64 MiB'),
    )
    .addOption(
      new Option(
        '--memory-budget <SIZE>',
        'request and response data held across all calls; past it the server stops reading from clients',
      )
        .argParser(parsePositiveSize)
        .default(DEFAULT_MEMORY_BUDGET, '256 MiB'),
    )
    .addOption(
      new Option(
        '--heap-growth <PERCENT>',
        "how far the server's JS heap may grow past its live data before a full collection (0: V8's own rule, up to 300)",
      )
        .argParser(wholeUpTo(1000, 'expected a whole percent from 0 to 1000'))
        .default(DEFAULT_HEAP_GROWTH_PERCENT),
    )
    .addOption(
      new Option(
        '--young-heap <MIB>',
        "the most the server's young JS heap (V8's new space) may grow to, in MiB (0: V8's own rule, up to 32)",
      )
        .argParser(wholeUpTo(1024, 'expected whole MiB from 0 to 1024'))
        .default(DEFAULT_YOUNG_HEAP_MIB),
    )
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
    .addOption(
      new Option(
        '--upload-ttl <TTL>',
        'keep an unfinished resumable upload this long after its last call: seconds or a duration (30m, 1h)',
      )
        .argParser(parseTtl)
        .default(3_600_000, '1h'),
    )
    .option('--etcd-listen <ADDR>', 'also serve only the etcd API on this address (e.g. 127.0.0.1:2379)')
    .option(
      '--etcd-max-request-bytes <SIZE>',
      'largest etcd write request; larger ones fail with "etcdserver: request is too large"',
      parseSize,
      DEFAULT_ETCD_MAX_REQUEST_BYTES,
    )
    .option(
      '--auto-compact <VALUE>',
      'history kept for old reads and watches: a number of revisions, a duration (1h, 30m, 7d) or off (default: 100000)',
      parseAutoCompactFlag,
    )
    .option('--wait-for-db', 'stores on a database server (postgres): wait for it at start instead of exiting', false)
    .option('--sql-timeout <MS>', 'cancel raw SQL statements running longer (postgres)', parseMilliseconds, 30_000)
    .addOption(
      new Option('--pg-dialect <NAME>', 'the PostgreSQL-compatible server behind a postgres:// store')
        .choices(PG_DIALECTS)
        .default('postgres' as const),
    )
    .option('--tls-cert <FILE>', 'serve TLS only, with this PEM certificate chain (needs --tls-key)')
    .option('--tls-key <FILE>', 'PEM private key of --tls-cert')
    .option('--tls-client-ca <FILE>', 'mutual TLS: require client certificates signed by this PEM CA bundle')
    .option('--auth-file <FILE>', 'require a token (or a known client certificate) on every call; see buffdb auth')
    .addOption(
      new Option(
        '--etcd-auth-token-ttl <TTL>',
        "an etcd user's token (Authenticate) ends this long after its last use: seconds or a duration",
      )
        .argParser(parseTtl)
        .default(DEFAULT_ETCD_TOKEN_TTL_MS, '5m'),
    )
    .option(
      '--sync-to <HOST:PORT>',
      'be an edge of the buffdb hub there: sync both ways in the background (docs/sync.md)',
    )
    .option(
      '--sync-push-prefix <PREFIX>',
      'only KV keys with this prefix go up to the hub (repeatable; default: all)',
      collect,
      [],
    )
    .option(
      '--sync-pull-prefix <PREFIX>',
      'only KV keys with this prefix come down from the hub (repeatable; default: all)',
      collect,
      [],
    )
    .addOption(
      new Option(
        '--sync-max-offline <TTL>',
        'history kept for a sync peer that is away, at most this long (then it gets a reset): seconds or a duration',
      )
        .argParser(parseTtl)
        .default(DEFAULT_SYNC_MAX_OFFLINE_MS, '30d'),
    )
    .option('--sync-tls-ca <FILE>', 'the hub serves TLS: trust this PEM CA bundle for it')
    .option(
      '--sync-token <TOKEN>',
      "the hub's token for this edge (needs the sync right); prefer the environment, which ps does not show",
    )
    .option('--metrics-addr <HOST:PORT>', 'serve Prometheus metrics at http://HOST:PORT/metrics')
    .option('--slow-ms <MS>', 'log requests slower than this many milliseconds (0: never)', parseWholeNumber, 1000)
    .addOption(
      new Option('--log-level <LEVEL>', 'log verbosity (JSON lines on stderr)').choices(LOG_LEVELS).default('info'),
    )
    .option(
      '--config <FILE>',
      'read run settings from this TOML file (flat keys named after the flags) [env BUFFDB_CONFIG]',
    )
    .addHelpText(
      'after',
      example(
        'buffdb run [::1]:50051 --kv-store kv_store.db --blob-store blob_store.db',
        'buffdb run 0.0.0.0:50051 --tls-cert server.crt --tls-key server.key',
        'buffdb run --etcd-listen 127.0.0.1:2379 --auto-compact 1h',
        'buffdb run [::1]:50052 --kv-store edge-kv.db --blob-store edge-blob.db --sync-to hub.example:50051',
        'buffdb run -b postgres --kv-store postgres://buffdb@db:5432/app --blob-store postgres://buffdb@db:5432/app',
        'BUFFDB_ADDR=127.0.0.1:50051 buffdb run --config buffdb.toml',
      ),
    );
  describeEnv(run, ['config']);
  run.action(async (addrArg, _opts, cmd) => {
    // `buffdb -b NAME run`: a -b given before the command is a flag too, so it beats the environment.
    const parent = cmd.parent;
    if (parent?.getOptionValueSource('backend') === 'cli' && cmd.getOptionValueSource('backend') !== 'cli') {
      cmd.setOptionValueWithSource('backend', parent.opts().backend, 'cli');
    }
    const configPath = (cmd.opts().config as string | undefined) ?? process.env.BUFFDB_CONFIG;
    const config = configPath === undefined ? undefined : await readConfigFile(configPath);
    applyEnvAndConfig(cmd, config, configPath, ['config']);
    const opts = cmd.opts() as RunFlags;
    const { runServer } = await import('./run-command.js');
    await runServer({
      // A positional ADDR is a flag: it beats --addr from the environment or the file.
      addr: addrArg ?? opts.addr,
      kvStore: opts.kvStore,
      blobStore: opts.blobStore,
      backend: opts.backend ?? DEFAULT_BACKEND,
      maxMessageSize: opts.maxMessageSize,
      memoryBudget: opts.memoryBudget,
      heapGrowthPercent: opts.heapGrowth,
      youngHeapMiB: opts.youngHeap,
      durability: opts.durability,
      readOnly: opts.readOnly,
      transactionTimeoutMs: opts.transactionTimeout,
      uploadTtlMs: opts.uploadTtl,
      etcdListen: opts.etcdListen,
      etcdMaxRequestBytes: opts.etcdMaxRequestBytes,
      autoCompact: opts.autoCompact,
      waitForDb: opts.waitForDb,
      sqlTimeoutMs: opts.sqlTimeout,
      pgDialect: opts.pgDialect,
      tlsCert: opts.tlsCert,
      tlsKey: opts.tlsKey,
      tlsClientCa: opts.tlsClientCa,
      authFile: opts.authFile,
      etcdAuthTokenTtlMs: opts.etcdAuthTokenTtl,
      metricsAddr: opts.metricsAddr,
      sync: {
        to: opts.syncTo,
        pushPrefixes: opts.syncPushPrefix,
        pullPrefixes: opts.syncPullPrefix,
        maxOfflineMs: opts.syncMaxOffline,
        tlsCa: opts.syncTlsCa,
        token: opts.syncToken,
      },
      slowMs: opts.slowMs,
      logLevel: opts.logLevel,
    });
  });
}

/** The values of `run`'s flags once the environment and the config file have filled them in. */
interface RunFlags {
  addr: string;
  kvStore: string;
  blobStore: string;
  backend?: string;
  maxMessageSize: number;
  memoryBudget: number;
  heapGrowth: number;
  youngHeap: number;
  durability: 'full' | 'normal';
  readOnly: boolean;
  transactionTimeout: number;
  uploadTtl: number;
  etcdAuthTokenTtl: number;
  etcdListen?: string;
  etcdMaxRequestBytes: number;
  autoCompact?: AutoCompactSetting;
  waitForDb: boolean;
  sqlTimeout: number;
  pgDialect: PgDialect;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  authFile?: string;
  metricsAddr?: string;
  syncTo?: string;
  syncPushPrefix: string[];
  syncPullPrefix: string[];
  syncMaxOffline: number;
  syncTlsCa?: string;
  syncToken?: string;
  slowMs: number;
  logLevel: (typeof LOG_LEVELS)[number];
}

export function buildMigrate(program: CommandUnknownOpts): void {
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
