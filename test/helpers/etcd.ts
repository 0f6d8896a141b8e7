/**
 * Real etcd for tests and benchmarks: the Debian binaries (`apt-get install etcd-server
 * etcd-client`), a throwaway etcd on loopback, and etcdctl as users run it. Tests that need them
 * skip when they are missing.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { accessSync, constants, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

/** The first executable `name` on PATH or in /usr/bin (where Debian installs it). */
function findBinary(name: string): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/bin'];
  for (const dir of dirs) {
    const path = join(dir, name);
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {}
  }
  return undefined;
}

export const findEtcd = (): string | undefined => findBinary('etcd');
export const findEtcdctl = (): string | undefined => findBinary('etcdctl');

/**
 * A reason to skip, outside CI. In CI (`CI` set) `.ci/run` installs the binaries, so a missing one
 * is a failure there, never a silent skip.
 */
export function unlessCi(reason: string | undefined): string | undefined {
  if (reason && process.env.CI) throw new Error(`${reason} (.ci/run installs them; in CI they must be there)`);
  return reason;
}

/** Why etcd tests cannot run here, or undefined when both binaries are installed. */
export function etcdMissing(): string | undefined {
  const missing = [findEtcd() ? '' : 'etcd', findEtcdctl() ? '' : 'etcdctl'].filter(Boolean);
  return unlessCi(
    missing.length ? `${missing.join(' and ')} not installed: apt-get install etcd-server etcd-client` : undefined,
  );
}

export interface EtcdctlResult {
  /** Exit status; null when etcdctl was ended by a signal (timeout or `until`). */
  code: number | null;
  stdout: string;
  stderr: string;
  /** Ended because `timeoutMs` passed. */
  timedOut: boolean;
}

export interface EtcdctlOptions {
  /** Written to stdin, then stdin is closed (e.g. `txn -i`). */
  input?: string;
  /** etcdctl is killed after this long (default 10 s) and the result says timedOut. */
  timeoutMs?: number;
  /** For commands that do not end (`watch`, `lease keep-alive`): stop etcdctl once stdout satisfies this. */
  until?: (stdout: string) => boolean;
  /** More environment (ETCDCTL_* from the caller's environment is not passed on). */
  env?: NodeJS.ProcessEnv;
}

/** Runs `etcdctl --endpoints=ENDPOINT ARGS` with the v3 API; never rejects for a failed command. */
export function etcdctl(endpoint: string, args: string[], opts: EtcdctlOptions = {}): Promise<EtcdctlResult> {
  const bin = findEtcdctl();
  if (!bin) return Promise.reject(new Error('etcdctl not installed'));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCDCTL_')));
  const child = spawn(bin, [`--endpoints=${endpoint}`, ...args], {
    env: { ...env, ETCDCTL_API: '3', ...opts.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, opts.timeoutMs ?? 10_000);
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
    if (opts.until?.(stdout)) child.kill('SIGTERM');
  });
  child.stderr.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  child.stdin.on('error', () => {}); // etcdctl may exit before reading its input
  child.stdin.end(opts.input ?? '');
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
  });
}

/** `etcdctl version` as "3.4.23", or undefined without etcdctl. */
export async function etcdctlVersion(): Promise<string | undefined> {
  if (!findEtcdctl()) return undefined;
  const { stdout } = await etcdctl('127.0.0.1:1', ['version']);
  return /etcdctl version: (\S+)/.exec(stdout)?.[1];
}

/** A loopback port nothing listens on right now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

export interface RunningEtcd {
  /** HOST:PORT for etcdctl --endpoints. */
  endpoint: string;
  /** http://HOST:PORT for clients that want a URL (the etcd3 npm client). */
  url: string;
  dataDir: string;
  child: ChildProcess;
  /** Ends etcd (SIGTERM, SIGKILL after 5 s) and removes the temp dir if startEtcd made it. */
  stop(): Promise<void>;
}

const START_DEADLINE_MS = 20_000;
const HEALTH_POLL_MS = 50;

/**
 * Starts a single-member etcd on 127.0.0.1 with free client and peer ports and its data under
 * `dir` (a new temp dir when omitted), quiet unless it fails, and resolves once its /health
 * endpoint answers healthy. Retries with new ports if one was taken in between.
 */
export async function startEtcd(dir?: string): Promise<RunningEtcd> {
  const bin = findEtcd();
  if (!bin) throw new Error('etcd not installed');
  const base = dir ?? mkdtempSync(join(tmpdir(), 'buffdb-etcd-'));
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(bin, base, dir === undefined);
    } catch (err) {
      if (attempt >= 3 || !/address already in use/.test((err as Error).message)) {
        if (dir === undefined) rmSync(base, { recursive: true, force: true });
        throw err;
      }
    }
  }
}

async function startOnce(bin: string, base: string, ownsDir: boolean): Promise<RunningEtcd> {
  const [clientPort, peerPort] = [await freePort(), await freePort()];
  const url = `http://127.0.0.1:${clientPort}`;
  const peerUrl = `http://127.0.0.1:${peerPort}`;
  const dataDir = mkdtempSync(join(base, 'data-'));
  const child = spawn(
    bin,
    [
      '--name=buffdb-test',
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${url}`,
      `--advertise-client-urls=${url}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=buffdb-test=${peerUrl}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=buffdb-test-${clientPort}`,
      '--logger=zap',
      '--log-level=error',
      '--log-outputs=stderr',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr = (stderr + d).slice(-16_384);
  });
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exit = new Promise<void>((resolve) =>
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      resolve();
    }),
  );
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);

  const end = async (): Promise<void> => {
    process.removeListener('exit', killOnExit);
    if (!exited) {
      child.kill('SIGTERM');
      const force = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exit;
      clearTimeout(force);
    }
  };
  const fail = async (message: string): Promise<never> => {
    await end();
    rmSync(dataDir, { recursive: true, force: true });
    throw new Error(`${message}: ${stderr.trim()}`);
  };
  const stop = async (): Promise<void> => {
    await end();
    rmSync(ownsDir ? base : dataDir, { recursive: true, force: true });
  };

  const deadline = Date.now() + START_DEADLINE_MS;
  for (;;) {
    if (exited) return fail(`etcd exited (${exited.code ?? exited.signal}) before it was healthy`);
    if (await healthy(url)) return { endpoint: `127.0.0.1:${clientPort}`, url, dataDir, child, stop };
    if (Date.now() > deadline) return fail(`etcd not healthy after ${START_DEADLINE_MS} ms`);
    await Promise.race([new Promise((r) => setTimeout(r, HEALTH_POLL_MS)), exit]);
  }
}

/** etcd's HTTP health endpoint (same port as gRPC): {"health":"true"} once it has a leader and serves reads. */
async function healthy(url: string): Promise<boolean> {
  try {
    const res = await fetch(`${url}/health`, { signal: AbortSignal.timeout(1000) });
    return res.ok && ((await res.json()) as { health?: string }).health === 'true';
  } catch {
    return false;
  }
}
