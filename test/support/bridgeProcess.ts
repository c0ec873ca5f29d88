import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { freePort } from './testUtils.js';

const MAIN = fileURLToPath(new URL('../../dist/main.js', import.meta.url));

export interface BridgeProcess {
  readonly child: ChildProcess;
  /** Every stderr line so far (JSON log lines). */
  readonly logLines: string[];
  readonly stdout: () => string;
  /** Resolves with the first log line matching, or rejects with the log after timeoutMs. */
  waitForLog(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM; resolves with the exit code. */
  stop(): Promise<number | null>;
  /** The exit code, or a rejection with the log when the bridge still runs after timeoutMs. */
  exitedWithin(timeoutMs: number): Promise<number | null>;
  readonly exited: Promise<number | null>;
}

/**
 * Runs the built CLI (`dist/main.js`, what `npm start` runs) as a child process with the given
 * flags and environment: the integration tests exercise the bridge exactly as a user runs it.
 */
export function startBridge(args: string[], env: Record<string, string>): BridgeProcess {
  const child = spawn(process.execPath, [MAIN, ...args], {
    // No state file unless a test asks for one: runs must not restore each other's tasks. No
    // HTTP listener unless a test asks (--http-port): bridges of concurrent runs share 9464.
    env: {
      PATH: process.env['PATH'] ?? '',
      CELERY_OTEL_BRIDGE_STATE_FILE: 'none',
      CELERY_OTEL_BRIDGE_HTTP_PORT: '0',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logLines: string[] = [];
  let stdout = '';
  let partial = '';
  const waiters: { pattern: RegExp; resolve: (line: string) => void }[] = [];
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      logLines.push(line);
      for (const waiter of [...waiters]) {
        if (waiter.pattern.test(line)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(line);
        }
      }
    }
  });
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    logLines,
    stdout: () => stdout,
    exited,
    waitForLog(pattern, timeoutMs = 30_000) {
      const found = logLines.find((line) => pattern.test(line));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(
              `bridge logged no line matching ${pattern} within ${timeoutMs} ms:\n${logLines.join('\n')}`,
            ),
          );
        }, timeoutMs);
        void exited.then((code) => {
          clearTimeout(timer);
          reject(
            new Error(`bridge exited (${code}) before logging ${pattern}:\n${logLines.join('\n')}`),
          );
        });
        waiters.push({
          pattern,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
    exitedWithin(timeoutMs) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              new Error(
                `bridge still running after ${timeoutMs} ms, expected it to exit:\n${logLines.join('\n')}`,
              ),
            ),
          timeoutMs,
        );
      });
      return Promise.race([exited, late]).finally(() => clearTimeout(timer));
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
  };
}

export interface HttpBridgeProcess extends BridgeProcess {
  /** Base URL of its /metrics, /healthz and /readyz listener, e.g. `http://127.0.0.1:41234`. */
  readonly httpUrl: string;
}

/** startBridge with its HTTP listener on 127.0.0.1 at a free port (`--http-host`, `--http-port`). */
export async function startBridgeWithHttp(
  args: string[],
  env: Record<string, string>,
): Promise<HttpBridgeProcess> {
  const port = await freePort();
  const bridge = startBridge(
    ['--http-host', '127.0.0.1', '--http-port', String(port), ...args],
    env,
  );
  return { ...bridge, httpUrl: `http://127.0.0.1:${port}` };
}

/** Removes the bridge's own RabbitMQ queue after a test (nothing to do on Redis). */
export async function deleteBridgeQueue(brokerUrl: string, queue: string): Promise<void> {
  if (!brokerUrl.startsWith('amqp')) return;
  const { default: amqp } = await import('amqplib');
  const connection = await amqp.connect(brokerUrl);
  try {
    await (await connection.createChannel()).deleteQueue(queue);
  } finally {
    await connection.close();
  }
}
