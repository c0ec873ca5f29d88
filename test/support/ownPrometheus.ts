import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, until } from './testUtils.js';

const PROMETHEUS = '/usr/bin/prometheus';

export interface OwnPrometheus {
  /** Base URL, e.g. http://127.0.0.1:41234 */
  readonly url: string;
  /** GET <url>/api/v1/<path>?params: its `data`, or throws with Prometheus's error. */
  api<T>(path: string, params?: Record<string, string>): Promise<T>;
  /** The last lines Prometheus logged (for failure messages). */
  logTail(): string;
  /** SIGTERM (SIGKILL after 10 s), then removes its config and data directory. */
  stop(): Promise<void>;
}

/**
 * A real Prometheus (Debian's `prometheus`, installed by scripts/setup-test-env.sh) on a free
 * port of 127.0.0.1, with its config and TSDB in a fresh temp directory that `stop` removes.
 * `files` are written beside `prometheus.yml` (rule files). Fails, never skips, when the binary
 * is missing.
 */
export async function startPrometheus(
  config: string,
  files: Record<string, string> = {},
  flags: string[] = [],
): Promise<OwnPrometheus> {
  const version = spawnSync(PROMETHEUS, ['--version'], { encoding: 'utf8' });
  if (version.error !== undefined || version.status !== 0) {
    throw new Error(
      `${PROMETHEUS} does not run (${version.error?.message ?? `exit ${version.status}`}): ` +
        "install Debian's prometheus with scripts/setup-test-env.sh",
    );
  }
  const dir = mkdtempSync(join(tmpdir(), 'celery-otel-prometheus-'));
  writeFileSync(join(dir, 'prometheus.yml'), config);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const port = await freePort();
  const child: ChildProcess = spawn(
    PROMETHEUS,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--log.level=warn',
      ...flags,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const log: string[] = [];
  const keep = (chunk: Buffer): void => {
    log.push(...chunk.toString('utf8').split('\n').filter(Boolean));
    log.splice(0, Math.max(0, log.length - 100));
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  // A killed test run must not leave a Prometheus behind.
  const killOnExit = (): void => void child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const url = `http://127.0.0.1:${port}`;
  const stop = async (): Promise<void> => {
    process.off('exit', killOnExit);
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await until(
      `Prometheus ready on ${url}`,
      async () => {
        if (child.exitCode !== null) throw new Error(`prometheus exited:\n${log.join('\n')}`);
        return (await fetch(`${url}/-/ready`)).ok;
      },
      60_000,
    );
  } catch (error) {
    await stop();
    throw new Error(`${(error as Error).message}\n${log.join('\n')}`, { cause: error });
  }
  return {
    url,
    logTail: () => log.join('\n'),
    stop,
    async api<T>(path: string, params: Record<string, string> = {}): Promise<T> {
      const response = await fetch(
        `${url}/api/v1/${path}?${new URLSearchParams(params).toString()}`,
      );
      const body = (await response.json()) as { status: string; data: T; error?: string };
      if (body.status !== 'success') {
        throw new Error(`Prometheus ${path} ${JSON.stringify(params)}: ${body.error ?? 'failed'}`);
      }
      return body.data;
    },
  };
}
