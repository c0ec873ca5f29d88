// The bridge as its CLI child process (`node dist/main.js`), and what /proc says about it.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { ROOT } from './paths.mjs';

const CLOCK_TICKS_PER_SECOND = 100;

/** utime + stime of a process, in seconds (/proc/<pid>/stat fields 14 and 15). */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  return (utime + stime) / CLOCK_TICKS_PER_SECOND;
}

/** CPU seconds of every process whose command name (/proc/<pid>/comm) is `comm`. */
export function cpuSecondsOf(comm: string): number {
  let total = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (readFileSync(`/proc/${entry}/comm`, 'utf8').trim() === comm)
        total += cpuSeconds(Number(entry));
    } catch {
      // Gone meanwhile.
    }
  }
  return total;
}

/** The machine's CPU time since boot, all cores, in seconds: in all and idle (/proc/stat). */
export function machineSeconds(): { total: number; idle: number } {
  const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0] ?? '';
  // cpu user nice system idle iowait irq softirq steal ...
  const fields = line.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = fields.reduce((sum, value) => sum + value, 0);
  const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
  return { total: total / CLOCK_TICKS_PER_SECOND, idle: idle / CLOCK_TICKS_PER_SECOND };
}

/** VmRSS and VmHWM (peak RSS) in bytes, from /proc/<pid>/status. */
export function memory(pid: number): { rss: number; hwm: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (name: string): number => {
    const match = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
    return match?.[1] === undefined ? 0 : Number(match[1]) * 1024;
  };
  return { rss: kb('VmRSS'), hwm: kb('VmHWM') };
}

export interface BridgeChild {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly logLines: string[];
  ready(timeoutMs: number): Promise<void>;
  /** SIGTERM (graceful: finished tasks are exported), SIGKILL after 20 s; resolves the exit code. */
  stop(): Promise<number | null>;
  /** What the bridge's own log lines said was dropped, rejected or evicted, summed by kind. */
  problems(): Record<string, number>;
}

export function startBridgeChild(
  args: string[],
  env: Record<string, string>,
  nodeOptions: string[] = [],
): BridgeChild {
  const child = spawn(process.execPath, [...nodeOptions, `${ROOT}dist/main.js`, ...args], {
    env: { PATH: process.env['PATH'] ?? '', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  if (child.pid === undefined) throw new Error('could not start the bridge');
  const pid = child.pid;
  const logLines: string[] = [];
  let partial = '';
  let onLine: ((line: string) => void) | undefined;
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
    partial += chunk;
    const lines = partial.split('\n');
    partial = lines.pop() ?? '';
    for (const line of lines) {
      logLines.push(line);
      onLine?.(line);
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return {
    child,
    pid,
    logLines,
    ready(timeoutMs) {
      const isReady = (line: string): boolean => /"(consuming|subscribed) /.test(line);
      if (logLines.some(isReady)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new Error(`the bridge did not start within ${timeoutMs} ms:\n${logLines.join('\n')}`),
          );
        }, timeoutMs);
        void exited.then((code) => {
          clearTimeout(timer);
          reject(new Error(`the bridge exited (${code}) at start:\n${logLines.join('\n')}`));
        });
        onLine = (line) => {
          if (!isReady(line)) return;
          clearTimeout(timer);
          resolve();
        };
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    problems() {
      const totals: Record<string, number> = {};
      for (const line of logLines) {
        if (!line.includes('problems since the last summary')) continue;
        try {
          const fields = JSON.parse(line) as Record<string, unknown>;
          for (const [key, value] of Object.entries(fields)) {
            if (typeof value === 'number' && /[:_]/.test(key) && key !== 'pid') {
              totals[key] = (totals[key] ?? 0) + value;
            }
          }
        } catch {
          // Not a JSON line: ignore.
        }
      }
      const disconnects = logLines.filter((line) => /lost the connection|reconnecting/.test(line));
      if (disconnects.length > 0) totals['broker_disconnects'] = disconnects.length;
      return totals;
    },
  };
}

/** Whether this build of the bridge has a flag (the CLI grows while the bench stays the same). */
export function bridgeHasFlag(flag: string): boolean {
  const help = spawnSync(process.execPath, [`${ROOT}dist/main.js`, '--help'], { encoding: 'utf8' });
  return help.stdout.includes(flag);
}

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** The bridge's own counters from its Prometheus endpoint, summed per metric name. */
export async function scrapeCounters(port: number): Promise<Record<string, number> | undefined> {
  try {
    const response = await fetch(`http://127.0.0.1:${port}/metrics`);
    if (!response.ok) return undefined;
    const totals: Record<string, number> = {};
    for (const line of (await response.text()).split('\n')) {
      const match = /^(celery_otel_bridge_[a-z_]+)(?:\{[^}]*\})?\s+(\S+)/.exec(line);
      if (match?.[1] === undefined || match[2] === undefined) continue;
      totals[match[1]] = (totals[match[1]] ?? 0) + Number(match[2]);
    }
    return totals;
  } catch {
    return undefined;
  }
}
