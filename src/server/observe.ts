/**
 * A server interceptor that watches every call from the outside: counts, latency and open streams
 * for the metrics, and log lines for slow requests and server-side errors. It logs the method,
 * status code and peer address only — never keys, values, SQL or tokens (error details have their
 * quoted parts blanked, since store messages quote keys).
 */
import {
  ServerInterceptingCall,
  type ServerInterceptingCallInterface,
  type ServerInterceptor,
  type ServerMethodDefinition,
  status,
} from '@grpc/grpc-js';
import type { Logger } from './logger.js';
import type { Metrics } from './metrics.js';

/** Bidi methods answered one-to-one, in order: their latency is measured per message. */
const PAIRED = new Set([
  '/buffdb.kv.Kv/Get',
  '/buffdb.kv.Kv/Set',
  '/buffdb.kv.Kv/Delete',
  '/buffdb.blob.Blob/Get',
  '/buffdb.blob.Blob/Store',
  '/buffdb.blob.Blob/Update',
  '/buffdb.blob.Blob/Delete',
  '/buffdb.query.Query/Execute',
]);
/** Calls that stay open by design (their duration says nothing). */
const OPEN_ENDED = new Set([
  '/grpc.health.v1.Health/Watch',
  '/etcdserverpb.Watch/Watch',
  '/etcdserverpb.Lease/LeaseKeepAlive',
  '/buffdb.sync.Sync/Exchange',
  '/buffdb.sync.Sync/BlobExchange',
]);
/** Codes that mean the server failed, not the request. */
const SERVER_ERRORS = new Set<number>([status.UNKNOWN, status.INTERNAL, status.DATA_LOSS]);

export interface ObserveOptions {
  metrics?: Metrics;
  log?: Logger;
  /** Log requests slower than this many ms (0: never). */
  slowMs?: number;
}

/** Blanks quoted text (keys, SQL fragments) out of an error message before it is logged. */
export function redact(details: string): string {
  return details.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'/g, '"…"');
}

/** At most one line per method and kind each second; the next one says how many were skipped. */
class Throttle {
  private readonly last = new Map<string, { at: number; skipped: number }>();

  pass(key: string): number | undefined {
    const now = Date.now();
    const entry = this.last.get(key);
    if (entry && now - entry.at < 1000) {
      entry.skipped++;
      return undefined;
    }
    const skipped = entry?.skipped ?? 0;
    this.last.set(key, { at: now, skipped: 0 });
    return skipped;
  }
}

export function observeCalls({ metrics, log, slowMs = 0 }: ObserveOptions): ServerInterceptor {
  const throttle = new Throttle();
  // Timing only when something uses it (metrics, or slow-request logs); error logs need none.
  const timing = metrics !== undefined || slowMs > 0;
  return (method: ServerMethodDefinition<unknown, unknown>, call: ServerInterceptingCallInterface) => {
    const path = method.path;
    const name = path.slice(1);
    const paired = timing && PAIRED.has(path);
    const perCall = timing && !PAIRED.has(path) && !OPEN_ENDED.has(path);
    const started = timing ? performance.now() : 0;
    const received: number[] = [];
    const duration = metrics?.duration.labels(name);
    const streams = metrics?.streamsOpen.labels(name);
    streams?.inc();
    let finished = false;
    const took = (ms: number): void => {
      duration?.observe(ms / 1000);
      if (slowMs > 0 && ms > slowMs && log) {
        const skipped = throttle.pass(`slow ${name}`);
        if (skipped !== undefined) {
          log.warn({ method: name, ms: Math.round(ms), peer: call.getPeer(), skipped }, 'slow request');
        }
      }
    };
    const finish = (code: number, details: string | undefined): void => {
      if (finished) return;
      finished = true;
      streams?.dec();
      metrics?.calls.inc({ method: name, code });
      if (perCall) took(performance.now() - started);
      if (metrics && code !== status.CANCELLED) {
        if (path === '/buffdb.kv.Kv/CommitTransaction') {
          if (code === status.OK) metrics.transactions.inc({ outcome: 'committed' });
          else if (code === status.ABORTED) metrics.transactions.inc({ outcome: 'aborted' });
        } else if (path === '/buffdb.kv.Kv/RollbackTransaction' && code === status.OK) {
          metrics.transactions.inc({ outcome: 'rolled_back' });
        }
      }
      if (!log || code === status.OK) return;
      if (SERVER_ERRORS.has(code)) {
        const skipped = throttle.pass(`error ${name}`);
        if (skipped !== undefined) {
          log.error(
            { method: name, code, details: redact(details ?? ''), peer: call.getPeer(), skipped },
            'request failed',
          );
        }
      } else {
        log.debug({ method: name, code }, 'request refused');
      }
    };
    return new ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMessage: (message, nextMessage) => {
            if (paired) received.push(performance.now());
            nextMessage(message);
          },
          onCancel: () => finish(status.CANCELLED, undefined),
        }),
      sendMessage: (message, nextMessage) => {
        if (paired) {
          const at = received.shift();
          if (at !== undefined) took(performance.now() - at);
        }
        nextMessage(message);
      },
      sendStatus: (s, nextStatus) => {
        finish(s.code, s.details);
        nextStatus(s);
      },
    });
  };
}

type Definition = Record<
  string,
  { path: string; requestDeserialize: (b: Buffer) => unknown; responseSerialize: (v: never) => Buffer }
>;

/** The same service definition, counting the bytes of every message received and sent. */
export function countBytes<D extends object>(definition: D, metrics: Metrics): D {
  const out: Definition = {};
  for (const [key, m] of Object.entries(definition as Definition)) {
    const received = metrics.bytesReceived.labels(m.path.slice(1));
    const sent = metrics.bytesSent.labels(m.path.slice(1));
    out[key] = {
      ...m,
      requestDeserialize: (bytes) => {
        received.inc(bytes.length);
        return m.requestDeserialize(bytes);
      },
      responseSerialize: (value) => {
        const bytes = m.responseSerialize(value);
        sent.inc(bytes.length);
        return bytes;
      },
    };
  }
  return out as D;
}
