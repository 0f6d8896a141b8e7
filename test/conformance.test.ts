/** The shared conformance suite (src/conformance, exported as `buffdb/conformance`), once per backend under test. */
import { conformance } from '../src/conformance/suite.js';
import { storeLocator } from './helpers/postgres.js';
import { TEST_BACKENDS } from './helpers/server.js';

for (const backend of TEST_BACKENDS) conformance(backend, { stores: () => storeLocator(backend) });
