// CPU time of the Redis read thread alone, per MB and per message read, on a fixed stream: the
// captured Celery stream's envelopes (test/fixtures/redis-celery-5.2.6.jsonl) cycled, or `multi`
// messages (`task.multi` lists of 16 events, as a busy worker's event buffer sends them, in the
// captured envelope). The thread is the built one (dist/), started as RedisEventSource starts it,
// on a redis-server of its own whose pub/sub output buffer has no limit (the stream is always
// delivered whole); the publisher is another process; this thread only pulls batches and counts.
// The figure is the read thread's own CPU time (/proc/thread-self/schedstat, read on that thread)
// from before the first publish to the last message handed over, so neither the main thread nor
// the publisher nor Redis is in it.
//
//   npm run build
//   npx esbuild test/perf/redisReadThreadCost.ts --bundle --platform=node --format=esm \
//     --packages=external --outfile=node_modules/.cache/redis-read-cost/run.mjs
//   node node_modules/.cache/redis-read-cost/run.mjs [captured|multi] [messages] [runs]
//
// Not a test (vitest only runs *.test.ts): a measurement, run by hand. Linux only.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { parseBrokerUrl } from '../../src/config/brokerUrl.js';
import { startOwnRedis } from '../support/ownRedis.js';

const shape = process.argv[2] ?? 'multi';
const messages = Number(process.argv[3] ?? 100_000);
const runs = Number(process.argv[4] ?? 5);
// Run from the repository's root (the bundle lives elsewhere).
const ROOT = pathToFileURL(`${process.cwd()}/`);
const THREAD = ['dist/brokers/redis/redisReadThread.js', 'dist/source/redisReadThread.js']
  .map((path) => new URL(path, ROOT))
  .find((url) => existsSync(url));
if (THREAD === undefined) throw new Error('no read thread in dist/: run npm run build');

interface Captured {
  readonly channel: string;
  readonly payload: string;
}
const captured = readFileSync(new URL('test/fixtures/redis-celery-5.2.6.jsonl', ROOT), 'utf8')
  .split('\n')
  .filter((line) => line.trim() !== '')
  .map((line) => JSON.parse(line) as Captured);

/** The envelopes to publish: [channel, payload]. */
function stream(): [string, string][] {
  if (shape === 'captured') {
    return Array.from({ length: messages }, (_, i) => {
      const message = captured[i % captured.length] as Captured;
      return [message.channel, message.payload];
    });
  }
  const multi = captured.filter((m) => m.channel.endsWith('/task.multi'));
  const events = multi.flatMap((m) => {
    const envelope = JSON.parse(m.payload) as { body: string };
    return JSON.parse(Buffer.from(envelope.body, 'base64').toString('utf8')) as unknown[];
  });
  const template = multi[0] as Captured;
  return Array.from({ length: messages }, (_, i) => {
    const list = Array.from({ length: 16 }, (_, j) => events[(i * 16 + j) % events.length]);
    const body = Buffer.from(JSON.stringify(list)).toString('base64');
    return [template.channel, template.payload.replace(/^\{"body": "[^"]*"/, `{"body": "${body}"`)];
  });
}

const PUBLISHER = `
  const { Redis } = require('ioredis');
  const [url, file] = process.argv.slice(1);
  const list = JSON.parse(require('node:fs').readFileSync(file, 'utf8'));
  const client = new Redis(url, { enableAutoPipelining: false });
  (async () => {
    const inFlight = [];
    for (let i = 0; i < list.length; i += 128) {
      const pipeline = client.pipeline();
      for (const [channel, payload] of list.slice(i, i + 128)) pipeline.publish(channel, payload);
      inFlight.push(pipeline.exec());
      if (inFlight.length >= 4) await inFlight.shift();
    }
    await Promise.all(inFlight);
    await client.quit();
  })().catch((e) => { console.error(e); process.exit(1); });`;

/** Runs on the read thread: its CPU time on request, then the thread's own script. */
const WRAPPER = `
  const { workerData } = require('node:worker_threads');
  const { readFileSync } = require('node:fs');
  workerData.cpuPort.on('message', () =>
    workerData.cpuPort.postMessage(Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0])));
  import(workerData.threadUrl);`;

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

async function run(url: string, file: string, bytes: number): Promise<number> {
  const { port1, port2 } = new MessageChannel();
  const shared = new SharedArrayBuffer(8);
  const worker = new Worker(WRAPPER, {
    eval: true,
    workerData: {
      broker: parseBrokerUrl(`${url}/0`),
      exchange: 'celeryev',
      channels: { globalKeyPrefix: '', fanoutPrefix: '/0.', maxBufferedBytes: 1 << 30 },
      connectTimeoutMs: 5000,
      maxBatchBytes: 1024 * 1024,
      bufferedBytes: shared,
      threadUrl: THREAD?.href,
      cpuPort: port2,
    },
    transferList: [port2],
  });
  const cpu = (): Promise<number> =>
    new Promise((resolve) => {
      port1.once('message', (ns: number) => resolve(ns));
      port1.postMessage('cpu');
    });
  let received = 0;
  let allReceived: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allReceived = resolve));
  const started = new Promise<void>((resolve, reject) => {
    worker.on('message', (event: { type: string; count?: number; offsets?: Uint32Array }) => {
      if (event.type === 'started') resolve();
      if (event.type === 'failed') reject(new Error(JSON.stringify(event)));
      if (event.type !== 'batch') return;
      received += event.count ?? (event.offsets?.length ?? 0) / 2;
      if (received >= messages) allReceived();
      else worker.postMessage({ type: 'pull' });
    });
  });
  await started;
  worker.postMessage({ type: 'pull' });
  const before = await cpu();
  const publisher: ChildProcess = spawn(process.execPath, ['-e', PUBLISHER, url, file], {
    stdio: 'inherit',
    cwd: ROOT.pathname,
  });
  await done;
  const ns = (await cpu()) - before;
  publisher.kill();
  // The CPU port keeps the thread alive: closed first, so that the stop ends it.
  port1.close();
  worker.postMessage({ type: 'stop' });
  await new Promise((resolve) => worker.once('exit', resolve));
  return ns / (bytes / 1e6);
}

const list = stream();
const bytes = list.reduce((sum, [, payload]) => sum + Buffer.byteLength(payload), 0);
const file = `${tmpdir()}/redis-read-cost-${process.pid}.json`;
writeFileSync(file, JSON.stringify(list));
const port = await freePort();
const redis = await startOwnRedis(port);
try {
  const url = `redis://127.0.0.1:${port}`;
  const { Redis } = await import('ioredis');
  const admin = new Redis(url);
  await admin.config('SET', 'client-output-buffer-limit', 'pubsub 0 0 0');
  await admin.quit();
  const figures: number[] = [];
  for (let i = 0; i < runs; i++) figures.push(await run(url, file, bytes));
  figures.sort((a, b) => a - b);
  const median = figures[Math.floor(figures.length / 2)] as number;
  const perMessage = (median * bytes) / 1e6 / messages;
  process.stdout.write(
    `${shape}: ${messages} messages, ${(bytes / 1e6).toFixed(1)} MB (${Math.round(bytes / messages)} B each); ` +
      `read thread CPU ms/MB: median ${(median / 1e6).toFixed(2)} of [${figures.map((f) => (f / 1e6).toFixed(2)).join(', ')}]; ` +
      `${(perMessage / 1000).toFixed(2)} µs/message\n`,
  );
} finally {
  redis.kill();
}
