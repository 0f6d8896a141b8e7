/**
 * Pieces the command builders share: option parsers, where -s/-b/--addr are read from, common
 * options, one-line usage errors. Only commander is loaded here (start-up stays light).
 */
import { type CommandUnknownOpts, InvalidArgumentError, Option } from '@commander-js/extra-typings';
import { BACKEND_NAMES, DEFAULT_BACKEND } from '../backends/index.js';
import { EXIT } from './exit-codes.js';

export function parseSize(value: string): number {
  const m = /^(\d+)\s*([kmg]i?b?)?$/i.exec(value.trim());
  if (!m) throw new InvalidArgumentError('expected a size such as 67108864, 64MiB or 512KiB');
  const unit = (m[2] ?? '').toLowerCase()[0];
  const mult = unit === 'k' ? 1024 : unit === 'm' ? 1024 ** 2 : unit === 'g' ? 1024 ** 3 : 1;
  return Number(m[1]) * mult;
}

/**
 * `-s`/`-b` are accepted on the group (`buffdb kv -s FILE get K`) and after the subcommand
 * (`buffdb kv get K -s FILE`); `-b` also before the group. Only the outermost carries the default,
 * so the innermost value given wins.
 */
export function resolveOption(cmd: CommandUnknownOpts, name: 'store' | 'backend', fallback: string): string {
  for (let c: CommandUnknownOpts | null = cmd; c; c = c.parent) {
    const value = (c.opts() as Record<string, unknown>)[name];
    if (typeof value === 'string') return value;
  }
  return fallback;
}

/** The innermost value given on the command line for `name` (undefined if none). */
export function givenOption(cmd: CommandUnknownOpts, name: string): string | undefined {
  for (let c: CommandUnknownOpts | null = cmd; c; c = c.parent) {
    const value = (c.opts() as Record<string, unknown>)[name];
    if (typeof value === 'string' && c.getOptionValueSource(name) === 'cli') return value;
  }
  return undefined;
}

/**
 * `--addr` (or BUFFDB_ADDR) sends the command to a running server instead of the store file. A
 * -s on the command line beats BUFFDB_ADDR; beside --addr it is a usage error.
 */
export function remoteTarget(cmd: CommandUnknownOpts) {
  const flagAddr = givenOption(cmd, 'addr');
  const store = givenOption(cmd, 'store');
  if (flagAddr !== undefined && store !== undefined) {
    usageError(cmd, '--addr and -s/--store exclude each other: talk to a server, or open a store file');
  }
  const addr = flagAddr ?? (store === undefined ? process.env.BUFFDB_ADDR || undefined : undefined);
  const tls = {
    tlsCa: givenOption(cmd, 'tlsCa'),
    tlsCert: givenOption(cmd, 'tlsCert'),
    tlsKey: givenOption(cmd, 'tlsKey'),
  };
  const token = givenOption(cmd, 'token') ?? (process.env.BUFFDB_TOKEN || undefined);
  if (addr === undefined) {
    const stray = Object.entries({ ...tls, token: givenOption(cmd, 'token') }).find(([, v]) => v !== undefined);
    if (stray) usageError(cmd, `--${stray[0].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} needs --addr (a server)`);
    return undefined;
  }
  return { addr, ...tls, token };
}

/** The server options of `kv` and `blob`, accepted where -s is: on the group and after the subcommand. */
export function addRemoteOptions(group: CommandUnknownOpts, withSubcommands = true): void {
  for (const cmd of withSubcommands ? [group, ...group.commands] : [group]) {
    if (cmd.name() === 'help') continue;
    cmd
      .option(
        '--addr <HOST:PORT>',
        'talk to the buffdb server at HOST:PORT instead of the store file [env BUFFDB_ADDR]',
      )
      .option('--tls-ca <FILE>', 'with --addr: TLS, verifying the server with this PEM CA bundle')
      .option('--tls-cert <FILE>', 'with --addr: client certificate for mutual TLS (with --tls-key)')
      .option('--tls-key <FILE>', 'with --addr: key of --tls-cert')
      .option('--token <TOKEN>', 'with --addr: the access token [env BUFFDB_TOKEN]');
  }
}

export const backendOption = () =>
  new Option('-b, --backend <NAME>', `storage engine (default: ${DEFAULT_BACKEND})`).choices(BACKEND_NAMES);
/** After the subcommand there is no default of its own (the group's applies), so say it in words. */
export const storeOption = (def?: string) =>
  new Option('-s, --store <PATH>', `store file${def ? ` (default: ${def})` : ''}`);

export const example = (...lines: string[]) =>
  `\nExample${lines.length > 1 ? 's' : ''}:\n${lines.map((l) => `  ${l}`).join('\n')}`;

export function usageError(cmd: CommandUnknownOpts, message: string): never {
  cmd.error(message, { exitCode: EXIT.USAGE, code: 'buffdb.usage' });
}

/** A group (`buffdb`, `kv`, `blob`) given no or an unknown subcommand: one line, not a help page. */
export function groupAction(cmd: CommandUnknownOpts): void {
  if (cmd.args.length > 0) {
    (cmd as unknown as { unknownCommand(): never }).unknownCommand();
  }
  const names = cmd.commands
    .filter((c) => c.name() !== 'help')
    .map((c) => c.name())
    .join(', ');
  usageError(cmd, `missing command: use one of ${names}`);
}

export function parseMilliseconds(value: string): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n <= 0)
    throw new InvalidArgumentError('expected a positive whole number of milliseconds');
  return n;
}

export function parseWholeNumber(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value.trim()) || !Number.isSafeInteger(n))
    throw new InvalidArgumentError('expected a whole number');
  return n;
}

/** A repeatable option's values: `--role ROLE`, `--kv-read [PREFIX]` ('' = every key), `--sync-push-prefix P`. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
