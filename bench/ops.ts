/**
 * What the production features cost: Kv Set and Get throughput on one stream against `buffdb run`
 * with TLS, with auth (a token checked per call), with both, and with request observation off
 * (--slow-ms 0, no metrics) or fully on (--metrics-addr) — each as a ratio to the default server,
 * measured in the same run with the configurations interleaved round by round.
 *
 *   npm run build && node --import tsx bench/ops.ts [--messages 20000] [--rounds 5]
 *
 * or from a harness: `measureOpsOverhead({ messages, rounds })`.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type ChannelCredentials, credentials, Metadata } from '@grpc/grpc-js';
import { connect } from '../src/client/network.js';
import { makePki } from '../test/helpers/ops.js';
import { type Child, key16, log, median, pump, startChild, TUNED_CLIENT, VALUE_100 } from './lib.js';

const CLI = resolve(import.meta.dirname, '..', 'dist', 'cli', 'main.js');

export interface OpsOverhead {
  messages: number;
  rounds: number;
  /** Configuration → { set, get }: median over rounds of (its msgs/s ÷ the default server's msgs/s). */
  ratios: Record<string, { set: number; get: number }>;
  /** Configuration → msgs/s per round (round k of every configuration ran back to back). */
  rates: Record<string, { set: number[]; get: number[] }>;
}

interface Config {
  name: string;
  args: string[];
  tls: boolean;
  token: boolean;
}

export async function measureOpsOverhead({ messages = 20_000, rounds = 5 } = {}): Promise<OpsOverhead> {
  const dir = mkdtempSync(join(tmpdir(), 'buffdb-bench-ops-'));
  const pki = makePki(dir);
  const auth = join(dir, 'auth.json');
  const token = execFileSync(process.execPath, [
    CLI,
    'auth',
    'add-token',
    'bench',
    '--auth-file',
    auth,
    '--kv-read',
    '--kv-write',
  ])
    .toString()
    .trim();
  const tlsArgs = ['--tls-cert', pki.serverCert, '--tls-key', pki.serverKey];
  const configs: Config[] = [
    { name: 'default', args: [], tls: false, token: false },
    { name: 'observe off (--slow-ms 0)', args: ['--slow-ms', '0'], tls: false, token: false },
    { name: 'metrics on', args: ['--metrics-addr', '127.0.0.1:0'], tls: false, token: false },
    { name: 'TLS', args: tlsArgs, tls: true, token: false },
    { name: 'auth', args: ['--auth-file', auth], tls: false, token: true },
    { name: 'TLS + auth', args: [...tlsArgs, '--auth-file', auth], tls: true, token: true },
  ];
  const servers: Child[] = [];
  try {
    for (const [i, c] of configs.entries()) {
      servers.push(
        await startChild(
          process.execPath,
          [CLI, 'run', '127.0.0.1:0', '--kv-store', `kv${i}.db`, '--blob-store', `blob${i}.db`, ...c.args],
          dir,
        ),
      );
    }
    const ca = readFileSync(pki.caCert);
    const rates: Record<string, { set: number[]; get: number[] }> = {};
    for (let round = 0; round < rounds; round++) {
      for (const [i, c] of configs.entries()) {
        const creds: ChannelCredentials = c.tls ? credentials.createSsl(ca) : credentials.createInsecure();
        const clients = connect(servers[i]!.addr, { credentials: creds, clientOptions: TUNED_CLIENT });
        const md = new Metadata();
        if (c.token) md.set('authorization', `Bearer ${token}`);
        try {
          const setMs = await pump(clients.kv.set(md), messages, (n) => ({ key: key16('k', n), value: VALUE_100 }));
          const getMs = await pump(clients.kv.get(md), messages, (n) => ({ key: key16('k', n) }));
          rates[c.name] ??= { set: [], get: [] };
          rates[c.name]!.set.push((messages / setMs) * 1000);
          rates[c.name]!.get.push((messages / getMs) * 1000);
        } finally {
          clients.close();
        }
      }
      log(`ops overhead: round ${round + 1}/${rounds} done`);
    }
    const base = rates.default!;
    const ratios: OpsOverhead['ratios'] = {};
    for (const c of configs) {
      const r = rates[c.name]!;
      ratios[c.name] = {
        set: median(r.set.map((v, k) => v / base.set[k]!)),
        get: median(r.get.map((v, k) => v / base.get[k]!)),
      };
    }
    return { messages, rounds, ratios, rates };
  } finally {
    for (const s of servers) await s.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const arg = (name: string, def: number): number => {
    const i = process.argv.indexOf(`--${name}`);
    return i > 0 ? Number(process.argv[i + 1]) : def;
  };
  const r = await measureOpsOverhead({ messages: arg('messages', 20_000), rounds: arg('rounds', 5) });
  console.log(`Kv Set / Get on one stream, ${r.messages} messages, median of ${r.rounds} interleaved rounds:`);
  for (const [name, { set, get }] of Object.entries(r.ratios)) {
    console.log(`  ${name.padEnd(28)} ${set.toFixed(2)}x / ${get.toFixed(2)}x the default server`);
  }
}
