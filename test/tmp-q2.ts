import { TargetStore } from '../src/generated/query.js';
import { bidi, startTestServer } from './helpers/server.js';

for (const backend of ['postgres', 'sqlite']) {
  const srv = await startTestServer({ backend });
  const q = 'WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000) SELECT i FROM n';
  const t0 = Date.now();
  const res = await bidi(srv.clients.query.query(), [{ query: q, target: TargetStore.KV }]);
  console.log(backend, res.out.length, res.err?.message, Date.now() - t0);
  await srv.dispose();
}
process.exit(0);
