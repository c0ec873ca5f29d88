import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, until } from './testUtils.js';

/**
 * A Redis Sentinel group of the test's own, on free ports of 127.0.0.1 (never the shared 6379):
 * a master, one replica of it, and two sentinels (Debian's `redis-sentinel`, installed by
 * scripts/setup-test-env.sh) monitoring the master under `masterName` with quorum 1, so that a
 * test can fail over (SENTINEL FAILOVER) without disturbing anyone. The sentinels rewrite their
 * config files, which live in a temporary directory removed by `stop`.
 */
export interface OwnSentinelGroup {
  readonly masterName: string;
  readonly sentinelPorts: readonly number[];
  /** `sentinel://127.0.0.1:<p1>;sentinel://127.0.0.1:<p2>/<db>`, as kombu takes it. */
  url(db: number): string;
  /** The port the sentinels currently report for the master. */
  masterPort(): number;
  /** Forces a failover to the replica and waits until the sentinels and the replica agree. */
  failover(): Promise<number>;
  /** Kills the redis-server on `port` (one of the group's two). */
  killServer(port: number): void;
  /** `redis-cli -p <port> <args>`, output trimmed. */
  cli(port: number, ...args: string[]): string;
  stop(): void;
}

export function requireRedisSentinel(): void {
  try {
    execFileSync('redis-sentinel', ['--version'], { stdio: 'pipe' });
  } catch (error) {
    throw new Error(
      "Debian's redis-sentinel is not installed (run scripts/setup-test-env.sh, or " +
        `apt-get install -y redis-sentinel): ${(error as Error).message}`,
    );
  }
}

function cli(port: number, ...args: string[]): string {
  return execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], {
    encoding: 'utf8',
    stdio: 'pipe',
    timeout: 5000,
  }).trim();
}

const answers = (port: number): Promise<boolean> => {
  try {
    return Promise.resolve(cli(port, 'ping') === 'PONG');
  } catch {
    return Promise.resolve(false);
  }
};

export async function startOwnSentinelGroup(masterName: string): Promise<OwnSentinelGroup> {
  requireRedisSentinel();
  const dir = mkdtempSync(join(tmpdir(), 'celery-otel-sentinel-'));
  const children = new Map<number, ChildProcess>();
  const server = (port: number, extra: string[]): void => {
    const child = spawn(
      'redis-server',
      // --dir: a replica saves the master's full sync to disk; it goes in the temporary directory.
      [
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        ...extra,
      ],
      { stdio: 'ignore' },
    );
    children.set(port, child);
  };
  const stop = (): void => {
    for (const child of children.values()) child.kill('SIGKILL');
    children.clear();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const masterPort = await freePort();
    const replicaPort = await freePort();
    server(masterPort, []);
    await until(`master redis-server on ${masterPort}`, () => answers(masterPort), 10_000);
    server(replicaPort, ['--replicaof', '127.0.0.1', String(masterPort)]);
    await until(
      `replica on ${replicaPort} in sync with ${masterPort}`,
      () =>
        Promise.resolve(
          /master_link_status:up/.test(safeCli(replicaPort, 'info', 'replication') ?? ''),
        ),
      20_000,
    );
    const sentinelPorts = [await freePort(), await freePort()];
    for (const port of sentinelPorts) {
      const conf = join(dir, `sentinel-${port}.conf`);
      writeFileSync(
        conf,
        [
          `port ${port}`,
          'bind 127.0.0.1',
          'protected-mode no',
          `dir ${dir}`,
          `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} 1`,
          `sentinel down-after-milliseconds ${masterName} 5000`,
          `sentinel failover-timeout ${masterName} 20000`,
          `sentinel parallel-syncs ${masterName} 1`,
          '',
        ].join('\n'),
      );
      const child = spawn('redis-sentinel', [conf], { stdio: 'ignore' });
      children.set(port, child);
    }
    for (const port of sentinelPorts) {
      // A forced failover needs a replica the sentinel knows and has heard from.
      await until(
        `sentinel on ${port} to know the replica of ${masterName}`,
        () =>
          Promise.resolve(
            (safeCli(port, 'sentinel', 'replicas', masterName) ?? '').includes(
              String(replicaPort),
            ) &&
              !/s_down|disconnected/.test(safeCli(port, 'sentinel', 'replicas', masterName) ?? ''),
          ),
        30_000,
      );
    }
    const masterPortNow = (): number => {
      const reply = cli(
        sentinelPorts[0] as number,
        'sentinel',
        'get-master-addr-by-name',
        masterName,
      );
      return Number(reply.split('\n')[1]);
    };
    return {
      masterName,
      sentinelPorts,
      url: (db) => sentinelPorts.map((p) => `sentinel://127.0.0.1:${p}`).join(';') + `/${db}`,
      masterPort: masterPortNow,
      async failover(): Promise<number> {
        const before = masterPortNow();
        const target = before === masterPort ? replicaPort : masterPort;
        expectOk(cli(sentinelPorts[0] as number, 'sentinel', 'failover', masterName));
        await until(
          `failover of ${masterName} to ${target}`,
          () =>
            Promise.resolve(
              sentinelPorts.every((port) => {
                const reply = safeCli(port, 'sentinel', 'get-master-addr-by-name', masterName);
                return reply?.split('\n')[1] === String(target);
              }) && /role:master/.test(safeCli(target, 'info', 'replication') ?? ''),
            ),
          30_000,
        );
        return target;
      },
      killServer(port: number): void {
        children.get(port)?.kill('SIGKILL');
        children.delete(port);
      },
      cli,
      stop,
    };
  } catch (error) {
    stop();
    throw error;
  }
}

function safeCli(port: number, ...args: string[]): string | undefined {
  try {
    return cli(port, ...args);
  } catch {
    return undefined;
  }
}

function expectOk(reply: string): void {
  if (reply !== 'OK') throw new Error(`SENTINEL FAILOVER answered ${JSON.stringify(reply)}`);
}
