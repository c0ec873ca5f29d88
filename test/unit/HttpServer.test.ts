import { afterEach, describe, expect, it } from 'vitest';
import { HttpServer } from '../../src/http/HttpServer.js';

let server: HttpServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
});

async function listen(ready: boolean): Promise<string> {
  server = new HttpServer('127.0.0.1', 0, {
    metrics: (_request, response) => response.end('# metrics\n'),
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
