/**
 * The shared `buffdb kv` CLI cases (cli/cases.ts) against a `buffdb run` server on the same store
 * files: same commands, same bytes out, same exit statuses as on the files (cli.test.ts).
 */
import { kvCases, MODES } from './cli/cases.js';

kvCases(MODES[1]!);
