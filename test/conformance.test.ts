/** The shared conformance suite (test/conformance/suite.ts), once for every registered backend. */
import { BACKEND_NAMES } from '../src/backends/index.js';
import { conformance } from './conformance/suite.js';

for (const backend of BACKEND_NAMES) conformance(backend);
