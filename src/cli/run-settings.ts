/**
 * Where a `buffdb run` setting comes from: the command line, else the environment
 * (BUFFDB_ + the flag in upper snake case), else the config file (`--config FILE`, TOML, flat keys
 * named after the flags), else the default. The command's commander options are the one list of
 * settings: a new flag is picked up by all three sources with no extra code.
 */
import { readFileSync } from 'node:fs';
import type { CommandUnknownOpts, Option } from '@commander-js/extra-typings';
import { CliError, EXIT } from './exit-codes.js';

/** `--metrics-addr` → `BUFFDB_METRICS_ADDR`. */
export function envName(option: Option): string {
  return `BUFFDB_${option
    .attributeName()
    .replace(/[A-Z]/g, (c) => `_${c}`)
    .toUpperCase()}`;
}

/** The key a config file uses for `option`: the long flag without its dashes (`metrics-addr`). */
export function configKey(option: Option): string {
  return (option.long ?? '').replace(/^--/, '');
}

const TRUE = new Set(['true', '1', 'yes', 'on']);
const FALSE = new Set(['false', '0', 'no', 'off', '']);

/** A value from the environment or a config file, checked and converted as the flag's would be. */
function convert(option: Option, raw: unknown, where: string): unknown {
  if (option.isBoolean()) {
    if (typeof raw === 'boolean') return raw;
    const text = String(raw).trim().toLowerCase();
    if (TRUE.has(text)) return true;
    if (FALSE.has(text)) return false;
    throw new CliError(EXIT.USAGE, `${where}: expected true or false, got ${JSON.stringify(raw)}`);
  }
  if (typeof raw === 'object' || raw === null) {
    throw new CliError(EXIT.USAGE, `${where}: expected a single value, got ${JSON.stringify(raw)}`);
  }
  const text = String(raw);
  if (option.argChoices && !option.argChoices.includes(text)) {
    throw new CliError(EXIT.USAGE, `${where}: ${JSON.stringify(text)} is not one of ${option.argChoices.join(', ')}`);
  }
  if (!option.parseArg) return text;
  try {
    return option.parseArg(text, undefined);
  } catch (err) {
    throw new CliError(EXIT.USAGE, `${where}: ${(err as Error).message}`);
  }
}

/** Reads a TOML config file: a flat table whose keys are `run` flags. */
export async function readConfigFile(path: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const reason = e.code === 'ENOENT' ? 'no such file' : e.code === 'EISDIR' ? 'is a directory' : e.message;
    throw new CliError(EXIT.FAILURE, `cannot read the config file ${path}: ${reason}`);
  }
  const { parse } = await import('smol-toml');
  try {
    return parse(text) as Record<string, unknown>;
  } catch (err) {
    const first = (err as Error).message.split('\n')[0];
    throw new CliError(EXIT.USAGE, `config file ${path} is not valid TOML: ${first}`);
  }
}

/**
 * Fills every option of `cmd` that the command line left at its default from the environment,
 * then from `config`. An unknown config key is an error naming it. `skip` names options that are
 * handled elsewhere (`--config` itself).
 */
export function applyEnvAndConfig(
  cmd: CommandUnknownOpts,
  config: Record<string, unknown> | undefined,
  configPath: string | undefined,
  skip: readonly string[] = [],
): void {
  const options = (cmd as unknown as { options: Option[] }).options.filter((o) => !skip.includes(configKey(o)));
  if (config) {
    const known = new Set(options.map(configKey));
    for (const key of Object.keys(config)) {
      if (!known.has(key)) {
        throw new CliError(
          EXIT.USAGE,
          `unknown key ${JSON.stringify(key)} in the config file ${configPath}; keys are the run flags: ${[...known].join(', ')}`,
        );
      }
    }
  }
  for (const option of options) {
    const name = option.attributeName();
    const source = cmd.getOptionValueSource(name);
    if (source !== undefined && source !== 'default') continue;
    const env = envName(option);
    const fromEnv = process.env[env];
    if (fromEnv !== undefined) {
      cmd.setOptionValueWithSource(name, convert(option, fromEnv, `environment variable ${env}`), 'env');
    } else if (config && configKey(option) in config) {
      const key = configKey(option);
      cmd.setOptionValueWithSource(name, convert(option, config[key], `${key} in ${configPath}`), 'config');
    }
  }
}

/** Adds "(env BUFFDB_…)" to each option's help line. */
export function describeEnv(cmd: CommandUnknownOpts, skip: readonly string[] = []): void {
  for (const option of (cmd as unknown as { options: Option[] }).options) {
    if (skip.includes(configKey(option))) continue;
    option.description = `${option.description} [env ${envName(option)}]`;
  }
}
