// Runs a real Celery 5.2.6 worker (Debian's python3-celery) and the test producer
// (test/celery/produce.py) for integration tests. Services missing => tests FAIL with a message
// saying how to fix the machine; they never skip.
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect as netConnect } from 'node:net';
import { hostname as osHostname } from 'node:os';
import { fileURLToPath } from 'node:url';

import amqp from 'amqplib';
import { Redis } from 'ioredis';

/** Celery's directory: proj.py (the app) and produce.py (the producer CLI). */
export const CELERY_APP_DIR = fileURLToPath(new URL('../celery/', import.meta.url));

export const AMQP_URL = 'amqp://guest:guest@127.0.0.1:5672//';
export const REDIS_URL = 'redis://127.0.0.1:6379/0';
/**
 * Result backend given to workers and producers unless extraEnv overrides CELERY_RESULT_BACKEND
 * ('' = none). Only chords need one (celery/canvas.py `chord.run`); Redis db 1 keeps result keys
 * away from the Redis broker's db 0. Redis pub/sub channels are global, but the backend publishes
 * on `celery-task-meta-<id>`, which never matches the `/0.celeryev/*` event pattern.
 */
export const DEFAULT_RESULT_BACKEND = 'redis://127.0.0.1:6379/1';

const PYTHON = '/usr/bin/python3';

/**
 * `python3 -c LAUNCHER <python args...>`: asks the kernel to SIGKILL the process when its parent
 * (this test process) dies, then execs the real command (PDEATHSIG survives execve). Without it a
 * worker outlives a killed vitest worker, and with its stdout pipe gone it even ignores SIGTERM
 * (seen here: warm shutdown never completes). Celery's prefork children already die with their
 * MainProcess: celery/concurrency/prefork.py `process_initializer` ->
 * platforms.set_pdeathsig('SIGKILL').
 */
export const LAUNCHER = [
  'import ctypes, os, signal, sys',
  'ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG',
  "parent = os.environ.pop('CELERY_HARNESS_PARENT_PID', None)",
  'if parent is not None and os.getppid() != int(parent): sys.exit(70)  # parent already gone',
  'os.execv(sys.executable, [sys.executable] + sys.argv[1:])',
].join('\n');
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;
const LOG_LINES = 200;

export interface CeleryWorkerOptions {
  brokerUrl: string;
  queue: string;
  /**
   * Default 'prefork' (what the bridge meets in production; the only pool here that can terminate
   * a running task). Beware 'threads' in event tests: Celery 5.2.6 sends task events from the pool
   * threads over the consumer's shared connection, and on amqp task-started/task-succeeded events
   * were silently lost in 2 of 3 runs of 5 tasks.
   */
  pool?: 'solo' | 'prefork' | 'threads';
  concurrency?: number;
  /** Celery node name; `%h` is expanded here. Default `<random>@<this host>`. */
  hostname?: string;
  extraEnv?: Record<string, string>;
  /** Default true: `-E` plus CELERY_WORKER_SEND_TASK_EVENTS=1. False: only worker-* events. */
  sendEvents?: boolean;
}

export interface CeleryWorker {
  /** Node name exactly as the worker reports it in events (`hostname` field). */
  readonly hostname: string;
  /** Pid of the worker's MainProcess, which is also its process group id. */
  readonly pid: number;
  /** Resolves with the exit code (null when killed by a signal) once the worker exited. */
  readonly exited: Promise<number | null>;
  /** Warm shutdown (SIGTERM), SIGKILL of the whole group after 10 s; kills leftovers either way. */
  stop(): Promise<void>;
  /** SIGKILL the whole process group (MainProcess and pool children) without waiting. */
  kill9(): void;
  /** Last ~200 lines of the worker's stdout+stderr. */
  logTail(): string;
}

/**
 * Workers still running, SIGKILLed on a normal exit of the test process. (A test process killed by
 * a signal never runs 'exit' handlers: LAUNCHER's PDEATHSIG covers that case.)
 */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    // Negative pid = the process group: spawned with detached:true the worker is a group leader
    // and its prefork children (billiard) stay in its group.
    process.kill(-child.pid, signal);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const child of live) killGroup(child, 'SIGKILL');
  });
}

let pythonChecked = false;

/** '/usr/bin/python3' (the `python3` first on PATH is another interpreter without celery). */
export function celeryPython(): string {
  if (!pythonChecked) {
    const probe = spawnSync(
      PYTHON,
      ['-c', 'import celery, kombu, redis; print(celery.__version__)'],
      {
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    if (probe.error !== undefined || probe.status !== 0) {
      const why = probe.error?.message ?? probe.stderr.trim().split('\n').slice(-1)[0] ?? '';
      throw new Error(
        `${PYTHON} cannot import celery/kombu/redis (${why}): install python3-celery: ` +
          'apt-get install -y python3-celery python3-redis (or run scripts/setup-test-env.sh)',
      );
    }
    pythonChecked = true;
  }
  return PYTHON;
}

export function randomName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

const BROKERS = {
  amqp: {
    port: 5672,
    hint: 'RabbitMQ is not reachable on 127.0.0.1:5672: start it with `rabbitmq-server -detached`',
  },
  redis: {
    port: 6379,
    hint:
      'Redis is not reachable on 127.0.0.1:6379: start it with `redis-server --daemonize yes ' +
      '--bind 127.0.0.1 --port 6379 --save "" --appendonly no`',
  },
} as const;

/** Throws (so the test fails loudly, never skips) unless the broker accepts TCP within 3 s. */
export async function requireBroker(kind: 'amqp' | 'redis'): Promise<void> {
  const { port, hint } = BROKERS[kind];
  const problem = await new Promise<string | undefined>((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    const done = (result: string | undefined): void => {
      socket.destroy();
      resolve(result);
    };
    socket.setTimeout(3_000, () => done('no answer within 3 s'));
    socket.once('connect', () => done(undefined));
    socket.once('error', (err) => done(err.message));
  });
  if (problem !== undefined) {
    throw new Error(`${hint} (or run scripts/setup-test-env.sh). Connect failed: ${problem}`);
  }
}

/** Environment for the worker and produce.py: broker, queue, result backend, clean PYTHONPATH. */
export function celeryEnv(
  brokerUrl: string,
  queue: string,
  extraEnv: Record<string, string> | undefined,
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  // Another interpreter's settings (pyenv is first on PATH here) must not leak into the system
  // Python; the app directory is the cwd and on PYTHONPATH so `-A proj` / `import proj` work.
  delete env.PYTHONHOME;
  return {
    ...env,
    CELERY_HARNESS_PARENT_PID: String(process.pid),
    PYTHONPATH: CELERY_APP_DIR,
    PYTHONUNBUFFERED: '1',
    PYTHONDONTWRITEBYTECODE: '1',
    CELERY_RESULT_BACKEND: DEFAULT_RESULT_BACKEND,
    CELERY_BROKER_URL: brokerUrl,
    CELERY_TEST_QUEUE: queue,
    ...extraEnv,
  };
}

/** Keeps the last `max` complete lines of several streams (a partial line per stream). */
class LogTail {
  private readonly lines: string[] = [];
  private readonly partial = new Map<string, string>();
  constructor(
    private readonly max: number,
    private readonly onLine: (line: string) => void,
  ) {}

  push(stream: string, chunk: string): void {
    const text = (this.partial.get(stream) ?? '') + chunk;
    const parts = text.split('\n');
    this.partial.set(stream, parts.pop() ?? '');
    for (const line of parts) this.add(line);
  }

  flush(): void {
    for (const rest of this.partial.values()) if (rest !== '') this.add(rest);
    this.partial.clear();
  }

  text(): string {
    return this.lines.join('\n');
  }

  private add(line: string): void {
    this.lines.push(line);
    if (this.lines.length > this.max) this.lines.splice(0, this.lines.length - this.max);
    this.onLine(line);
  }
}

// celery/apps/worker.py `on_consumer_ready`: logger.info('%s ready.', hostname), logged once the
// consumer (task queue, pidbox, events, heartbeats) is up.
const READY_LINE = /INFO\/MainProcess\] (.+) ready\.\s*$/;

export async function startCeleryWorker(options: CeleryWorkerOptions): Promise<CeleryWorker> {
  const python = celeryPython();
  const pool = options.pool ?? 'prefork';
  const concurrency = options.concurrency ?? (pool === 'solo' ? 1 : 2);
  const requested = (options.hostname ?? `${randomName('worker')}@%h`).replaceAll(
    '%h',
    osHostname(),
  );
  const sendEvents = options.sendEvents ?? true;
  const args = [
    '-c',
    LAUNCHER,
    '-m',
    'celery',
    '-A',
    'proj',
    'worker',
    '-l',
    'INFO',
    '-Q',
    options.queue,
    '-n',
    requested,
    '-P',
    pool,
    '-c',
    String(concurrency),
    // Mingle would pull revoked ids from other workers and gossip subscribes to every worker's
    // events: both couple tests that share a broker. Heartbeats stay on (the bridge uses them).
    '--without-mingle',
    '--without-gossip',
  ];
  if (sendEvents) args.push('-E');
  const env = celeryEnv(options.brokerUrl, options.queue, {
    CELERY_WORKER_SEND_TASK_EVENTS: sendEvents ? '1' : '0',
    ...options.extraEnv,
  });

  let readyHostname: string | undefined;
  let onReady: (() => void) | undefined;
  const tail = new LogTail(LOG_LINES, (line) => {
    const match = READY_LINE.exec(line);
    if (match !== null && readyHostname === undefined) {
      readyHostname = match[1];
      onReady?.();
    }
  });

  const child = spawn(python, args, {
    cwd: CELERY_APP_DIR,
    env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  installExitHook();
  live.add(child);
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => tail.push('out', chunk));
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => tail.push('err', chunk));

  const exited = new Promise<number | null>((resolve) => {
    child.once('close', (code) => {
      tail.flush();
      live.delete(child);
      // Pool children may outlive a crashed MainProcess.
      killGroup(child, 'SIGKILL');
      resolve(code);
    });
  });
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const describe = `celery worker ${requested} (${pool} x${concurrency}, queue ${options.queue}, ${options.brokerUrl})`;
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      onReady = resolve;
      if (readyHostname !== undefined) resolve();
      timer = setTimeout(
        () => reject(new Error(`${describe} was not ready within ${READY_TIMEOUT_MS / 1000} s`)),
        READY_TIMEOUT_MS,
      );
      exited.then(
        (code) => reject(new Error(`${describe} exited with code ${code} before it was ready`)),
        reject,
      );
      spawnError.then(
        (err) => reject(new Error(`${describe} failed to start: ${err.message}`)),
        reject,
      );
    });
  } catch (err) {
    killGroup(child, 'SIGKILL');
    // A spawn failure (e.g. ENOENT) may never emit 'close'.
    await Promise.race([exited, spawnError]);
    throw new Error(`${(err as Error).message}\n--- worker log (tail) ---\n${tail.text()}`);
  } finally {
    clearTimeout(timer);
  }

  const pid = child.pid;
  if (pid === undefined || readyHostname === undefined) throw new Error(`${describe}: no pid`);
  return {
    hostname: readyHostname,
    pid,
    exited,
    kill9: () => killGroup(child, 'SIGKILL'),
    logTail: () => tail.text(),
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null) {
        await exited;
        return;
      }
      // SIGTERM only the MainProcess: that is Celery's warm shutdown, which stops the pool
      // itself; signalling the pool children too would kill running tasks mid-flight.
      try {
        process.kill(pid, 'SIGTERM');
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
      }
      let killTimer: NodeJS.Timeout | undefined;
      const timedOut = new Promise<'timeout'>((resolve) => {
        killTimer = setTimeout(() => resolve('timeout'), STOP_TIMEOUT_MS);
      });
      const outcome = await Promise.race([exited, timedOut]);
      clearTimeout(killTimer);
      if (outcome === 'timeout') killGroup(child, 'SIGKILL');
      await exited;
    },
  };
}

/** What `produce.py all` prints: the id(s) of each scenario it sent (see test/celery/produce.py). */
export interface ProducedAll {
  add: string;
  chain: string[];
  group: string[];
  chord: { header: string[]; callback: string };
  fail: string;
  flaky: string;
  spawn: string;
  rejected: string;
  adds: string[];
  revoked: string;
  terminated: string;
}

/**
 * Runs `produce.py <scenario> [...args]` against the broker/queue and returns its JSON line, e.g.
 * `{"chain": [id1, id2, id3]}`; see test/celery/produce.py for every scenario's shape.
 */
export async function produce(
  brokerUrl: string,
  queue: string,
  scenario: string,
  args: string[] = [],
  extraEnv?: Record<string, string>,
): Promise<Record<string, unknown>> {
  const python = celeryPython();
  const argv = ['-c', LAUNCHER, `${CELERY_APP_DIR}produce.py`, scenario, ...args];
  const { stdout, stderr } = await new Promise<{ stdout: string; stderr: string }>(
    (resolve, reject) => {
      execFile(
        python,
        argv,
        {
          cwd: CELERY_APP_DIR,
          env: celeryEnv(brokerUrl, queue, extraEnv),
          timeout: 60_000,
          maxBuffer: 16 * 1024 * 1024,
          encoding: 'utf8',
        },
        (error, out, err) => {
          if (error !== null) {
            const how = error.killed
              ? `killed by ${error.signal ?? 'timeout'} after 60 s`
              : `exit code ${String(error.code)}`;
            reject(
              new Error(
                `produce.py ${[scenario, ...args].join(' ')} failed (${how}; broker ${brokerUrl}, ` +
                  `queue ${queue})\n--- stderr ---\n${err.split('\n').slice(-40).join('\n')}`,
              ),
            );
          } else {
            resolve({ stdout: out, stderr: err });
          }
        },
      );
    },
  );
  const line = stdout.trim().split('\n').pop() ?? '';
  try {
    const parsed: unknown = JSON.parse(line);
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new Error('not a JSON object');
    }
    return parsed as Record<string, unknown>;
  } catch (err) {
    throw new Error(
      `produce.py ${scenario} printed no JSON object (${(err as Error).message}): ${JSON.stringify(line)}` +
        `\n--- stderr ---\n${stderr}`,
    );
  }
}

/**
 * Removes what Celery declared for a test queue so runs don't pile up broker state: with
 * `task_default_queue=Q` kombu declares a durable queue Q and a durable direct exchange Q
 * (RabbitMQ), or a list Q (plus priority lists `Q\x06\x16<n>`) and the binding set
 * `_kombu.binding.Q` (Redis). Call it after the worker stopped.
 */
export async function deleteTestQueue(brokerUrl: string, queue: string): Promise<void> {
  if (brokerUrl.startsWith('amqp')) {
    const connection = await amqp.connect(brokerUrl);
    try {
      const channel = await connection.createChannel();
      await channel.deleteQueue(queue);
      await channel.deleteExchange(queue);
    } finally {
      await connection.close();
    }
  } else {
    const redis = new Redis(brokerUrl, { maxRetriesPerRequest: 1 });
    try {
      const priorities = ['3', '6', '9'].map((p) => `${queue}\x06\x16${p}`);
      await redis.del(queue, ...priorities, `_kombu.binding.${queue}`);
    } finally {
      redis.disconnect();
    }
  }
}
