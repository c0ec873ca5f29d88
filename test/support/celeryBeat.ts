// Runs a real `celery beat` (Debian's python3-celery 5.2.6) on test/celery/beatproj.py for
// integration tests, with its schedule file in a temporary directory removed on stop.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CELERY_APP_DIR, LAUNCHER, celeryEnv, celeryPython } from './celeryWorker.js';

export interface BeatEntrySpec {
  readonly task: string;
  readonly seconds?: number;
  readonly cron?: Record<string, string>;
  readonly args?: unknown[];
}

export interface CeleryBeat {
  readonly pid: number;
  readonly exited: Promise<number | null>;
  /** SIGTERM (beat syncs its schedule and exits), SIGKILL after 10 s; removes the temp dir. */
  stop(): Promise<void>;
  logTail(): string;
}

// celery/beat.py Service.start: info('beat: Starting...') once the scheduler exists.
const STARTED = /beat: Starting\.\.\./;

export async function startCeleryBeat(options: {
  brokerUrl: string;
  queue: string;
  appName: string;
  entries: Record<string, BeatEntrySpec>;
  heartbeatS: number;
  companion?: boolean;
}): Promise<CeleryBeat> {
  const python = celeryPython();
  const dir = await mkdtemp(join(tmpdir(), 'celery-beat-test-'));
  const env = celeryEnv(options.brokerUrl, options.queue, {
    CELERY_BEAT_ENTRIES: JSON.stringify(options.entries),
    CELERY_BEAT_APP_NAME: options.appName,
    CELERY_OTEL_COMPANION: options.companion === false ? '0' : '1',
    CELERY_OTEL_BRIDGE_BEAT_HEARTBEAT: String(options.heartbeatS),
  });
  const child: ChildProcess = spawn(
    python,
    [
      '-c',
      LAUNCHER,
      '-m',
      'celery',
      '-A',
      'beatproj',
      'beat',
      '-l',
      'INFO',
      '-s',
      join(dir, 'schedule'),
    ],
    { cwd: CELERY_APP_DIR, env, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let log = '';
  let onStarted: (() => void) | undefined;
  const append = (chunk: string): void => {
    log = (log + chunk).slice(-20_000);
    if (STARTED.test(log)) onStarted?.();
  };
  child.stdout?.setEncoding('utf8').on('data', append);
  child.stderr?.setEncoding('utf8').on('data', append);
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  const removeDir = (): Promise<void> => rm(dir, { recursive: true, force: true });
  try {
    await new Promise<void>((resolve, reject) => {
      onStarted = resolve;
      if (STARTED.test(log)) resolve();
      const timer = setTimeout(
        () => reject(new Error('celery beat did not start within 30 s')),
        30_000,
      );
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`celery beat exited (${code}) before starting`));
      });
      child.once('error', reject);
    });
  } catch (error) {
    child.kill('SIGKILL');
    await removeDir();
    throw new Error(`${(error as Error).message}\n--- beat log ---\n${log}`);
  }
  return {
    pid: child.pid as number,
    exited,
    logTail: () => log,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
      await removeDir();
    },
  };
}

/** `celery -A proj control <command> <args> -d <worker>`: remote control of one worker. */
export function celeryControl(
  brokerUrl: string,
  queue: string,
  worker: string,
  command: string,
  args: string[],
): Promise<string> {
  const python = celeryPython();
  return new Promise((resolve, reject) => {
    execFile(
      python,
      ['-c', LAUNCHER, '-m', 'celery', '-A', 'proj', 'control', command, ...args, '-d', worker],
      { cwd: CELERY_APP_DIR, env: celeryEnv(brokerUrl, queue, undefined), timeout: 60_000 },
      (error, stdout, stderr) => {
        if (error !== null)
          reject(new Error(`celery control ${command} failed: ${error.message}\n${stderr}`));
        else resolve(stdout);
      },
    );
  });
}
