/**
 * Preloaded into a child process (`node --import this-file …`): at exit, writes the process's peak
 * resident set size (VmHWM, in bytes) to the file named by BUFFDB_PEAK_RSS_FILE.
 */
import { readFileSync, writeFileSync } from 'node:fs';

const out = process.env.BUFFDB_PEAK_RSS_FILE;
if (out) {
  process.on('exit', () => {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    writeFileSync(out, String(Number(m?.[1] ?? Number.NaN) * 1024));
  });
}
