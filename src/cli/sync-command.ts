/** The work of `buffdb sync status` / `conflicts` (sync-commands.ts): one call to the server. */
import type { ServiceError } from '@grpc/grpc-js';
import { describeKey } from '../errors.js';
import { type Conflict, SyncClient } from '../generated/sync.js';
import { hlcMs } from '../store/sync/stamp.js';
import { channelCredentials, toCliError, tokenMetadata } from './remote.js';
import type { RemoteTarget } from './store-access.js';

function client(target: RemoteTarget): SyncClient {
  return new SyncClient(target.addr, channelCredentials(target));
}

const cliError = (err: unknown, target: RemoteTarget): unknown => {
  const e = err as ServiceError;
  return typeof e.code === 'number' ? toCliError(e, target.addr, target.token !== undefined) : err;
};

const when = (ms: number): string => (ms === 0 ? 'never' : new Date(ms).toISOString());

export async function printStatus(target: RemoteTarget, json: boolean): Promise<void> {
  const c = client(target);
  try {
    const s = await new Promise<import('../generated/sync.js').StatusResponse>((resolve, reject) => {
      c.status({}, tokenMetadata(target), (err, value) => (err ? reject(cliError(err, target)) : resolve(value)));
    });
    const status = {
      edge: s.edge,
      hub: s.hub || null,
      connected: s.connected,
      lastSuccess: s.lastSuccessMs === 0n ? null : new Date(Number(s.lastSuccessMs)).toISOString(),
      waitingUp: Number(s.waitingUp),
      waitingDown: Number(s.waitingDown),
      bytesSent: Number(s.bytesSent),
      bytesReceived: Number(s.bytesReceived),
      conflicts: Number(s.conflicts),
      site: s.site,
      generation: Number(s.generation),
      lastError: s.lastError || null,
      edgesConnected: s.edgesConnected,
      blobs: {
        connected: s.blobConnected,
        sent: Number(s.blobsSent),
        received: Number(s.blobsReceived),
        bytesSent: Number(s.blobBytesSent),
        bytesReceived: Number(s.blobBytesReceived),
        lastError: s.blobLastError || null,
        logLast: Number(s.blobLogLast),
        logCompacted: Number(s.blobLogCompacted),
      },
    };
    if (json) {
      process.stdout.write(`${JSON.stringify(status)}\n`);
      return;
    }
    const lines = s.edge
      ? [
          `hub            ${s.hub} (${s.connected ? 'connected' : 'not connected'})`,
          `last success   ${when(Number(s.lastSuccessMs))}`,
          `waiting        ${status.waitingUp} local changes to send, ${status.waitingDown} hub revisions to apply`,
          `bytes          ${status.bytesSent} sent, ${status.bytesReceived} received`,
          `conflicts      ${status.conflicts} resolved on this link`,
          ...(s.lastError ? [`last error     ${s.lastError}`] : []),
          `blobs          ${s.blobConnected ? 'connected' : 'not connected'}: ${status.blobs.sent} sent, ` +
            `${status.blobs.received} received (${status.blobs.bytesSent} / ${status.blobs.bytesReceived} data bytes)`,
          ...(s.blobLastError ? [`blob error     ${s.blobLastError}`] : []),
        ]
      : ['not an edge (no --sync-to)'];
    lines.push(
      `site           ${s.site} (generation ${status.generation})`,
      `edges          ${s.edgesConnected} connected now`,
      `blob log       ${status.blobs.logLast} changes, compacted up to ${status.blobs.logCompacted}`,
    );
    process.stdout.write(`${lines.join('\n')}\n`);
  } finally {
    c.close();
  }
}

export async function printConflicts(target: RemoteTarget, json: boolean, sinceMs: number): Promise<void> {
  const c = client(target);
  try {
    const call = c.conflicts({ sinceMs: BigInt(sinceMs), limit: 0 }, tokenMetadata(target));
    try {
      for await (const x of call as AsyncIterable<Conflict>) {
        const loser = x.loserDeleted ? null : x.loserValue.toString('utf8');
        const line = json
          ? JSON.stringify({
              key: x.key.toString('utf8'),
              loser,
              loserSite: x.loserSite.toString('hex'),
              loserAt: new Date(hlcMs(Number(x.loserHlc))).toISOString(),
              winnerSite: x.winnerSite.toString('hex'),
              winnerAt: new Date(hlcMs(Number(x.winnerHlc))).toISOString(),
              resolved: new Date(Number(x.resolvedMs)).toISOString(),
            })
          : `${new Date(Number(x.resolvedMs)).toISOString()} ${describeKey(x.key)}: lost ${loser === null ? '(delete)' : JSON.stringify(loser)} from site ${x.loserSite.toString('hex')} to a later write of site ${x.winnerSite.toString('hex')}`;
        process.stdout.write(`${line}\n`);
      }
    } catch (err) {
      throw cliError(err, target);
    }
  } finally {
    c.close();
  }
}
