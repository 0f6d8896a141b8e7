/**
 * `buffdb auth …`: the auth file's tokens (`add-token`), etcd users (`add-user`) and roles
 * (`add-role`). Each imports its implementation (auth-command.ts) when it runs.
 */
import { type CommandUnknownOpts, Option } from '@commander-js/extra-typings';
import type { TokenPermissions } from './auth-command.js';
import { collect, example, groupAction } from './command-kit.js';

type PermissionFlags = TokenPermissions & { authFile: string };

const AUTH_FILE = ['--auth-file <FILE>', 'the auth file [env BUFFDB_AUTH_FILE]'] as const;

/** The permission flags of add-token and add-role. */
function permissionOptions(cmd: CommandUnknownOpts): CommandUnknownOpts {
  return cmd
    .addOption(
      new Option('--kv-read [PREFIX]', 'read keys (under PREFIX only, if given; repeatable)')
        .preset('')
        .argParser(collect),
    )
    .addOption(
      new Option('--kv-write [PREFIX]', 'set and delete keys (under PREFIX only, if given; repeatable)')
        .preset('')
        .argParser(collect),
    )
    .option('--blob-read', 'read blobs')
    .option('--blob-write', 'store, update and delete blobs')
    .option('--query-read', 'run read-only SQL (Query); SQL sees the whole store, key prefixes do not apply')
    .option('--query-write', 'run SQL that writes (Execute, and Query with writing SQL)')
    .option('--admin', 'administration: backup, and etcd users and roles')
    .option('--sync', "sync: an edge's link to this hub (reads and writes every key it syncs), and sync status");
}

export function buildAuth(program: CommandUnknownOpts): void {
  const auth = program
    .command('auth')
    .description('manage the tokens, etcd users and roles of an auth file (buffdb run --auth-file)');
  permissionOptions(
    auth
      .command('add-token')
      .description(
        'add a token named NAME with the given permissions to the auth file (created if missing) and print it.\n' +
          'Only its SHA-256 is stored: keep the printed token, it cannot be shown again.',
      )
      .argument('<NAME>', 'a name for the token (shown in logs and errors, never the token)')
      .requiredOption(...AUTH_FILE, process.env.BUFFDB_AUTH_FILE),
  )
    .addHelpText(
      'after',
      example(
        'buffdb auth add-token ci --auth-file auth.json --kv-read --kv-write app/ --blob-read',
        'token=$(buffdb auth add-token backup --auth-file auth.json --admin)',
      ),
    )
    .action(async (...args) => {
      const [name, opts] = args as unknown as [string, PermissionFlags];
      const { authAddToken } = await import('./auth-command.js');
      await authAddToken(name, opts.authFile, opts);
    });
  auth
    .command('add-user')
    .description(
      'add an etcd user NAME (etcdctl --user NAME, etcdserverpb.Auth/Authenticate) to the auth file (created if\n' +
        'missing). The password is read from stdin (all of it, less one final newline) or, on a terminal,\n' +
        'asked for twice without echo; only its scrypt hash is stored. The role root (all rights) is\n' +
        'created when first given, and the user root always gets it; other roles must exist (add-role,\n' +
        'or etcdctl role add).',
    )
    .argument('<NAME>', 'the user name')
    .requiredOption(...AUTH_FILE, process.env.BUFFDB_AUTH_FILE)
    .option('--role <ROLE>', 'give the user this role (repeatable)', collect)
    .addHelpText(
      'after',
      example(
        'printf \'%s\' "$ROOT_PASSWORD" | buffdb auth add-user root --auth-file auth.json',
        'buffdb auth add-user alice --auth-file auth.json --role app      # asks for the password',
      ),
    )
    .action(async (name, opts) => {
      const { authAddUser } = await import('./auth-command.js');
      await authAddUser(name, opts.authFile as string, opts.role ?? []);
    });
  permissionOptions(
    auth
      .command('add-role')
      .description(
        'add a role NAME with the given permissions (none: an empty role, as etcd adds them) to the auth file\n' +
          '(created if missing). Give it to tokens (edit the file) or etcd users (add-user --role, etcdctl).\n' +
          'etcd key-range permissions are added with etcdctl role grant-permission.',
      )
      .argument('<NAME>', 'the role name')
      .requiredOption(...AUTH_FILE, process.env.BUFFDB_AUTH_FILE),
  )
    .addHelpText('after', example('buffdb auth add-role app --auth-file auth.json --kv-read app/ --kv-write app/'))
    .action(async (...args) => {
      const [name, opts] = args as unknown as [string, PermissionFlags];
      const { authAddRole } = await import('./auth-command.js');
      authAddRole(name, opts.authFile, opts);
    });
  auth
    .helpCommand(true)
    .allowExcessArguments()
    .action((_opts, cmd) => groupAction(cmd));
}
