/**
 * Prometheus metrics (prom-client), served as text at http://HOST:PORT/metrics by
 * `buffdb run --metrics-addr HOST:PORT`. What is measured and how: docs/operating.md. The call
 * metrics are fed by the observe interceptor (observe.ts), the commit metrics by the group
 * committers' onBatch hook, the rest is read when scraped.
 */
import { readdirSync, statSync } from 'node:fs';
import { createServer, type Server as HttpServer } from 'node:http';
import { basename, dirname, join } from 'node:path';
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { BuffDb } from '../store/buffdb.js';

/** Seconds: from 50 µs (a grouped in-memory read) to 10 s. */
const LATENCY_BUCKETS = [
  0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];
const BATCH_BUCKETS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192];

/** Bytes of a store on disk: the file and what the engine keeps beside it (-wal, -shm, -lock, -rocksdb/ …). */
export function storeBytes(path: string): number {
  const sizeOf = (p: string): number => {
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) return 0;
    if (!st.isDirectory()) return st.size;
    return readdirSync(p).reduce((sum, name) => sum + sizeOf(join(p, name)), 0);
  };
  const name = basename(path);
  let siblings: string[];
  try {
    siblings = readdirSync(dirname(path)).filter(
      (n) => (n.startsWith(`${name}-`) || n.startsWith(`${name}.`)) && !n.includes('.txlog-'),
    );
  } catch {
    siblings = [];
  }
  return sizeOf(path) + siblings.reduce((sum, n) => sum + sizeOf(join(dirname(path), n)), 0);
}

export interface StorePaths {
  kv: string;
  blob: string;
}

export class Metrics {
  readonly registry = new Registry();
  readonly calls: Counter<'method' | 'code'>;
  readonly duration: Histogram<'method'>;
  readonly streamsOpen: Gauge<'method'>;
  readonly bytesReceived: Counter<'method'>;
  readonly bytesSent: Counter<'method'>;
  readonly transactions: Counter<'outcome'>;
  private readonly batchSize: Histogram<'store'>;
  private readonly commitSeconds: Histogram<'store'>;

  constructor(db?: BuffDb, paths?: StorePaths) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'buffdb_' });
    this.calls = new Counter({
      name: 'buffdb_grpc_calls_total',
      help: 'gRPC calls finished, by method and status code (0 = OK)',
      labelNames: ['method', 'code'],
      registers,
    });
    this.duration = new Histogram({
      name: 'buffdb_grpc_request_duration_seconds',
      help: 'Time to answer: per request message for streams answered one-to-one (Get, Set, Store, …), per call otherwise',
      labelNames: ['method'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.streamsOpen = new Gauge({
      name: 'buffdb_grpc_streams_open',
      help: 'Calls in progress, by method',
      labelNames: ['method'],
      registers,
    });
    this.bytesReceived = new Counter({
      name: 'buffdb_grpc_received_bytes_total',
      help: 'Bytes of request messages received (serialized protobuf)',
      labelNames: ['method'],
      registers,
    });
    this.bytesSent = new Counter({
      name: 'buffdb_grpc_sent_bytes_total',
      help: 'Bytes of response messages sent (serialized protobuf)',
      labelNames: ['method'],
      registers,
    });
    this.transactions = new Counter({
      name: 'buffdb_transactions_total',
      help: 'Transactions finished over gRPC: committed, aborted (conflict) or rolled_back',
      labelNames: ['outcome'],
      registers,
    });
    this.batchSize = new Histogram({
      name: 'buffdb_group_commit_batch_size',
      help: 'Operations per group-commit batch (one engine transaction, one sync)',
      labelNames: ['store'],
      buckets: BATCH_BUCKETS,
      registers,
    });
    this.commitSeconds = new Histogram({
      name: 'buffdb_group_commit_seconds',
      help: 'Time to run and commit one group-commit batch',
      labelNames: ['store'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    if (db) {
      new Gauge({
        name: 'buffdb_transactions_open',
        help: 'Transactions begun and not yet finished',
        registers,
        collect() {
          this.set(db.transactions.openCount);
        },
      });
      for (const [store, committer] of [
        ['kv', db.kv.committer],
        ['blob', db.blob.committer],
      ] as const) {
        const size = this.batchSize.labels(store);
        const seconds = this.commitSeconds.labels(store);
        committer.onBatch = (jobs, s) => {
          size.observe(jobs);
          seconds.observe(s);
        };
      }
    }
    if (paths) {
      new Gauge({
        name: 'buffdb_store_bytes',
        help: 'Size on disk of each store, with the files the engine keeps beside it',
        labelNames: ['store'],
        registers,
        collect() {
          this.set({ store: 'kv' }, storeBytes(paths.kv));
          this.set({ store: 'blob' }, storeBytes(paths.blob));
        },
      });
    }
  }

  /**
   * A gauge read at each scrape, for other parts of the server (the memory budget registers
   * `buffdb_memory_budget_bytes_in_use` here).
   */
  registerGauge(name: string, help: string, read: () => number | Promise<number>): void {
    new Gauge({
      name,
      help,
      registers: [this.registry],
      async collect() {
        this.set(await read());
      },
    });
  }
}

/** Splits HOST:PORT (IPv6 in brackets). */
export function parseHostPort(addr: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(addr);
  const port = Number(m?.[3]);
  if (!m || port > 65535) throw new Error(`expected HOST:PORT, such as 127.0.0.1:9464 or [::1]:9464, got ${addr}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port };
}

export interface MetricsServer {
  /** The address bound, with the real port. */
  addr: string;
  close(): Promise<void>;
}

/** Serves `metrics` as Prometheus text at /metrics on `addr`. */
export async function serveMetrics(metrics: Metrics, addr: string): Promise<MetricsServer> {
  const { host, port } = parseHostPort(addr);
  const server: HttpServer = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text),
      (err: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(err as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = server.address() as { port: number };
  const shown = host.includes(':') ? `[${host}]` : host;
  return {
    addr: `${shown}:${bound.port}`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
