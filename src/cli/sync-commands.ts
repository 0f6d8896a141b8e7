/**
 * `buffdb sync status` and `buffdb sync conflicts`: what a running server's sync is doing
 * (buffdb.sync.Sync/Status and /Conflicts), as text or `--json`.
 */
import type { CommandUnknownOpts } from '@commander-js/extra-typings';
import { addRemoteOptions, example, groupAction, remoteTarget, usageError } from './command-kit.js';

export function buildSync(program: CommandUnknownOpts): void {
  const sync = program
    .command('sync')
    .description('edge ⇄ hub sync of a running server (start an edge with buffdb run --sync-to HOST:PORT)')
    .allowExcessArguments()
    .action(function (this: CommandUnknownOpts) {
      groupAction(this);
    });
  sync
    .command('status')
    .description(
      'connected or not, last success, changes waiting each way, bytes, conflicts; --json: one object\n' +
        'with a boolean "connected"',
    )
    .option('--json', 'print one JSON object', false)
    .addHelpText(
      'after',
      example('buffdb sync status --addr [::1]:50052', 'buffdb sync status --addr [::1]:50052 --json'),
    )
    .action(async (opts, cmd) => {
      const remote = remoteTarget(cmd);
      if (!remote) usageError(cmd, 'missing --addr: the server to ask (or BUFFDB_ADDR)');
      await (await import('./sync-command.js')).printStatus(remote, opts.json);
    });
  sync
    .command('conflicts')
    .description('losing values of concurrent writes this server resolved, oldest first (kept --sync-max-offline)')
    .option('--json', 'one JSON object per line', false)
    .option('--since <MS>', 'only conflicts resolved at or after this time (ms since the epoch)', Number, 0)
    .addHelpText('after', example('buffdb sync conflicts --addr [::1]:50051 --json'))
    .action(async (opts, cmd) => {
      const remote = remoteTarget(cmd);
      if (!remote) usageError(cmd, 'missing --addr: the server to ask (or BUFFDB_ADDR)');
      await (await import('./sync-command.js')).printConflicts(remote, opts.json, opts.since);
    });
  addRemoteOptions(sync);
}
