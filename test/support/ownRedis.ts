import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { until } from './testUtils.js';

/**
 * A redis-server of the test's own on 127.0.0.1:`port`, without persistence, so a test can kill
 * and restart its broker without disturbing the shared Redis. Resolves once it answers PING.
 */
export async function startOwnRedis(port: number): Promise<ChildProcess> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  await until(
    `redis-server on port ${port} to answer PING`,
    () => {
      try {
        execFileSync('redis-cli', ['-p', String(port), 'ping'], { stdio: 'pipe' });
        return Promise.resolve(true);
      } catch {
        return Promise.resolve(false);
      }
    },
    10_000,
  );
  return child;
}
