/** grpc.health.v1.Health on a real loopback server: Check, Watch, and the status transitions. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { status } from '@grpc/grpc-js';
import { startServer } from '../src/server/server.js';
import { BuffDb } from '../src/store/buffdb.js';
import { checkHealth, healthClient } from './helpers/ops.js';
import { startTestServer, tempDir } from './helpers/server.js';

const SERVICES = ['', 'buffdb.kv.Kv', 'buffdb.blob.Blob', 'buffdb.query.Query'];

describe('health', () => {
  test('every service and the overall status are SERVING; an unknown service is NOT_FOUND', async () => {
    const server = await startTestServer();
    const client = healthClient(server.addr);
    try {
      for (const name of SERVICES) assert.deepEqual(await checkHealth(client, name), { status: 'SERVING' }, name);
      const unknown = await checkHealth(client, 'no.such.Service');
      assert.equal(unknown.err?.code, status.NOT_FOUND);
    } finally {
      client.close();
      await server.dispose();
    }
  });

  test('the status hook: a reason makes NOT_SERVING, clearing it makes SERVING; Watch sees both', async () => {
    const server = await startTestServer();
    const client = healthClient(server.addr);
    try {
      const watch = client.watch({ service: '' });
      const seen: string[] = [];
      watch.on('error', () => {});
      const next = (): Promise<string> =>
        new Promise((resolve) => watch.once('data', (m: { status: string }) => resolve(m.status)));
      seen.push(await next());
      server.running.health.set('database connection lost', true, ['buffdb.kv.Kv']);
      seen.push(await next());
      assert.deepEqual(await checkHealth(client, 'buffdb.kv.Kv'), { status: 'NOT_SERVING' });
      assert.deepEqual(await checkHealth(client, 'buffdb.blob.Blob'), { status: 'SERVING' });
      server.running.health.set('database connection lost', false, ['buffdb.kv.Kv']);
      seen.push(await next());
      assert.deepEqual(seen, ['SERVING', 'NOT_SERVING', 'SERVING']);
      watch.cancel();
    } finally {
      client.close();
      await server.dispose();
    }
  });

  test('shutting down: Watch gets NOT_SERVING, then its stream ends and shutdown does not wait for it', async () => {
    const server = await startTestServer();
    const client = healthClient(server.addr);
    try {
      const watch = client.watch({ service: 'buffdb.kv.Kv' });
      const statuses: string[] = [];
      watch.on('data', (m: { status: string }) => statuses.push(m.status));
      watch.on('error', () => {});
      await once(watch, 'data');
      const ended = once(watch, 'end');
      const started = Date.now();
      await server.running.shutdown(30_000);
      await ended;
      assert.ok(Date.now() - started < 20_000, 'shutdown did not wait for the grace period');
      assert.deepEqual(statuses, ['SERVING', 'NOT_SERVING']);
    } finally {
      client.close();
      await server.dispose();
    }
  });

  test('a read-only server reports NOT_SERVING', async () => {
    const dir = tempDir();
    const paths = { kvStore: join(dir, 'kv.db'), blobStore: join(dir, 'blob.db') };
    await (await BuffDb.open(paths)).close();
    const db = await BuffDb.open({ ...paths, readOnly: true });
    const running = await startServer(db, { addr: '127.0.0.1:0', readOnly: true });
    const client = healthClient(running.addr);
    try {
      for (const name of SERVICES) assert.deepEqual(await checkHealth(client, name), { status: 'NOT_SERVING' }, name);
      assert.deepEqual(running.health.reasonsFor(), ['read-only']);
    } finally {
      client.close();
      await running.shutdown();
    }
  });
});
