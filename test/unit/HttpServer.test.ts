import { createConnection, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { HttpServer } from '../../src/http/HttpServer.js';
import { until } from '../support/testUtils.js';

let server: HttpServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

async function listen(ready: boolean): Promise<string> {
  server = new HttpServer('127.0.0.1', 0, {
    metrics: (_request, response) => void response.end('# metrics\n'),
    readiness: () => ({ ready, detail: ready ? 'consuming' : 'broker unreachable' }),
  });
  return `http://127.0.0.1:${await server.start()}`;
}

describe('HttpServer', () => {
  it('serves /healthz, /readyz and /metrics, and names the methods it allows', async () => {
    const base = await listen(false);
    expect(await (await fetch(`${base}/healthz`)).text()).toBe('ok\n');
    const readyz = await fetch(`${base}/readyz?verbose`);
    expect(readyz.status).toBe(503);
    expect(await readyz.json()).toEqual({ ready: false, detail: 'broker unreachable' });
    expect(await (await fetch(`${base}/metrics`)).text()).toBe('# metrics\n');
    expect((await fetch(`${base}/metrics`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${base}/nope`)).status).toBe(404);
    const post = await fetch(`${base}/metrics`, { method: 'POST' });
    expect(post.status).toBe(405);
    expect(post.headers.get('allow')).toBe('GET, HEAD');
  });

  it('refuses to start on a port in use, naming the flags to change', async () => {
    const base = await listen(true);
    const taken = new HttpServer('127.0.0.1', Number(new URL(base).port), {
      metrics: () => undefined,
      readiness: () => ({ ready: true, detail: '' }),
    });
    await expect(taken.start()).rejects.toThrow(/EADDRINUSE; choose another --http-port/);
  });
});

function connect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = createConnection({ host: '127.0.0.1', port }, () => resolve(socket));
    socket.once('error', reject);
    socket.resume(); // read, so that the server closing it is seen
  });
}

function closed(socket: Socket): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed) resolve();
    else socket.once('close', () => resolve());
  });
}

describe('HttpServer limits', () => {
  it('drops a client that never finishes its headers, and one past the per-address cap', async () => {
    server = new HttpServer(
      '127.0.0.1',
      0,
      {
        metrics: (_request, response) => void response.end('# metrics\n'),
        readiness: () => ({ ready: true, detail: '' }),
      },
      { headersTimeoutMs: 300, requestTimeoutMs: 600, maxConnectionsPerAddress: 2 },
    );
    const port = await server.start();
    const slow = await connect(port);
    slow.write('GET /healthz HTTP/1.1\r\nHost: x\r\n'); // and never the blank line
    const idle = await connect(port);
    const third = await connect(port);
    await closed(third); // over the cap of 2 from this address
    await closed(slow);
    await closed(idle);
    // The slots are free again.
    expect(await (await fetch(`http://127.0.0.1:${port}/healthz`)).text()).toBe('ok\n');
  });

  it('builds one /metrics answer at a time, answers /healthz meanwhile, 503 past the queue', async () => {
    let running = 0;
    let most = 0;
    const release: (() => void)[] = [];
    server = new HttpServer(
      '127.0.0.1',
      0,
      {
        metrics: async (_request, response) => {
          running++;
          most = Math.max(most, running);
          await new Promise<void>((resolve) => release.push(resolve));
          running--;
          response.end('# metrics\n');
        },
        readiness: () => ({ ready: true, detail: '' }),
      },
      { maxWaitingMetrics: 2 },
    );
    const base = `http://127.0.0.1:${await server.start()}`;
    const scrapes = [1, 2, 3].map(() => fetch(`${base}/metrics`));
    await until('the first build', () => Promise.resolve(release.length === 1), 5000);
    const busy = await fetch(`${base}/metrics`);
    expect(busy.status).toBe(503);
    expect(busy.headers.get('retry-after')).toBe('1');
    expect(await (await fetch(`${base}/healthz`)).text()).toBe('ok\n');
    for (let done = 0; done < 3; done++) {
      await until('the next build', () => Promise.resolve(release.length > 0), 5000);
      release.shift()?.();
    }
    for (const scrape of await Promise.all(scrapes)) {
      expect(await scrape.text()).toBe('# metrics\n');
    }
    expect(most).toBe(1);
  });

  it('gives a /metrics build longer than the idle timeout its own time, and cuts it past that', async () => {
    let delayMs = 800;
    const failures: unknown[] = [];
    server = new HttpServer(
      '127.0.0.1',
      0,
      {
        metrics: async (_request, response) => {
          await new Promise((resolve) => setTimeout(resolve, delayMs));
          if (!response.destroyed) response.end('# metrics\n');
        },
        readiness: () => ({ ready: true, detail: '' }),
        failed: (error) => failures.push(error),
      },
      { idleTimeoutMs: 300, metricsTimeoutMs: 1500 },
    );
    const base = `http://127.0.0.1:${await server.start()}`;
    expect(await (await fetch(`${base}/metrics`)).text()).toBe('# metrics\n');
    delayMs = 3000;
    await expect(fetch(`${base}/metrics`)).rejects.toThrow();
    expect(String(failures[0])).toContain('not done within 1500 ms');
  });

  it('answers 500 and reports a /metrics handler that throws or rejects, and goes on', async () => {
    const failures: unknown[] = [];
    let calls = 0;
    server = new HttpServer('127.0.0.1', 0, {
      metrics: (_request, response) => {
        calls++;
        if (calls === 1) throw new RangeError('Invalid string length');
        if (calls === 2) return Promise.reject(new Error('collect failed'));
        response.end('# metrics\n');
        return undefined;
      },
      readiness: () => ({ ready: true, detail: '' }),
      failed: (error) => failures.push(error),
    });
    const base = `http://127.0.0.1:${await server.start()}`;
    expect((await fetch(`${base}/metrics`)).status).toBe(500);
    expect((await fetch(`${base}/metrics`)).status).toBe(500);
    expect(await (await fetch(`${base}/metrics`)).text()).toBe('# metrics\n');
    expect(failures.map((error) => (error as Error).message)).toEqual([
      'Invalid string length',
      'collect failed',
    ]);
  });
});
