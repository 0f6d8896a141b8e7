/**
 * The server's log: pino, one JSON object per line on stderr — or, when stderr is a terminal, the
 * same records as short readable lines. Callers log addresses, paths, method names and status
 * codes only: never keys, values, SQL or tokens.
 *
 * The readable form is a small formatter here rather than pino-pretty: pino-pretty brings 19
 * packages (2 MB) and ~40 ms of start-up for what is 20 lines (measured on Node 20, docs/operating.md).
 */
import { type DestinationStream, type LevelWithSilent, type Logger, pino } from 'pino';

export type { Logger };

export const LOG_LEVELS: readonly LevelWithSilent[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

const LEVEL_NAMES: Record<number, string> = {
  10: 'TRACE',
  20: 'DEBUG',
  30: 'INFO',
  40: 'WARN',
  50: 'ERROR',
  60: 'FATAL',
};
const OMIT = new Set(['level', 'time', 'msg', 'pid', 'hostname']);

/** `12:34:56.789 INFO  listening on [::1]:50051 backend=sqlite` from one JSON log line. */
export function readableLine(json: string): string {
  let record: Record<string, unknown>;
  try {
    record = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const time = new Date(Number(record.time)).toISOString().slice(11, 23);
  const level = (LEVEL_NAMES[Number(record.level)] ?? String(record.level)).padEnd(5);
  const fields = Object.entries(record)
    .filter(([k]) => !OMIT.has(k))
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${time} ${level} ${String(record.msg ?? '')}${fields ? ` ${fields}` : ''}\n`;
}

/**
 * A logger writing synchronously to stderr (so the last lines before process.exit are not lost),
 * readable when `pretty` (default: stderr is a terminal).
 */
export function createLogger(level: LevelWithSilent = 'info', pretty = process.stderr.isTTY === true): Logger {
  const stderr = pino.destination({ fd: 2, sync: true });
  const destination: DestinationStream = pretty
    ? { write: (line: string) => stderr.write(readableLine(line)) }
    : stderr;
  return pino({ level, base: undefined }, destination);
}

/** For library users who start a server without asking for logs. */
export const silentLogger: Logger = pino({ level: 'silent' });
