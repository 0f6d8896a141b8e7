/**
 * The shared `buffdb blob` CLI cases (cli/cases.ts) against a `buffdb run` server on the same store
 * files: same commands, same bytes out, same exit statuses as on the files (cli.test.ts).
 */
import { blobCases, MODES } from './cli/cases.js';

blobCases(MODES[1]!);
