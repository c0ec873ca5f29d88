import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import amqp from 'amqplib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type HttpBridgeProcess,
  deleteBridgeQueue,
  startBridgeWithHttp,
} from '../support/bridgeProcess.js';
import {
  AMQP_URL,
  type CeleryWorker,
  deleteTestQueue,
  produce,
  randomName,
  requireBroker,
  startCeleryWorker,
} from '../support/celeryWorker.js';
import { collectorSpelling } from '../support/collectorSpelling.js';
import { loadDashboards, queryPanels, substitute } from '../support/dashboards.js';
import { OtlpReceiver, SPAN_KIND_CONSUMER } from '../support/OtlpReceiver.js';
import { type OwnPrometheus, startPrometheus } from '../support/ownPrometheus.js';
import { parseYaml } from '../support/tools.js';
import { until } from '../support/testUtils.js';

/**
 * The dashboards, alert rules and exemplars on a real Prometheus (Debian's 2.42), scraping the
 * bridge (its CLI) while a real Celery worker runs tasks on RabbitMQ:
 * - every expression of every dashboard panel (variables substituted) and of every alert rule is
 *   evaluated through Prometheus's HTTP API and must parse; every panel the scenario exercises
 *   must return data, both from the bridge's own names and from the names an OpenTelemetry
 *   Collector's Prometheus exporter writes (see `collectorSpelling`);
 * - a burst of failures and a worker killed with kill -9 make their alerts pending or firing;
 * - exemplars read back from Prometheus carry trace ids of spans this test received over OTLP.
 *
 * The bridge reads the shared `celeryev` exchange, so it also sees other test runs' workers: the
 * Prometheus here keeps only this test's worker's series (metric_relabel_configs), and assertions
 * name this test's worker and task ids.
 */

/**
 * Panels whose metrics this scenario cannot show. Their queries must parse; once they return
 * data here, the test says so and they belong out of this list.
 */
const NOT_EXERCISED: Record<string, string> = {
  // A task shows as waiting only if a scrape falls while both worker processes are busy: some
  // runs have one, some do not, so the test cannot require it.
  'workers-queues.json: Oldest waiting task': 'celery.tasks.oldest_age{state=waiting}: timing',
};

/** The dashboards this scenario exercises (every other file of the directory is parsed only). */
const MY_DASHBOARDS = [
  'overview.json',
  'by-task.json',
  'workers-queues.json',
  'bridge-health.json',
];

/**
 * Alerts this scenario makes pending or firing; the others must not fire. CeleryTaskStuckStarted
 * may: the slow task runs for seconds and no task of its name finished in the last 30 minutes,
 * which with the test copy's 1 s `for:` is already its condition (10 minutes in the real rule).
 * CeleryBridgeRejectingEvents may: this bridge reads the shared exchange, where other test runs
 * publish events it rejects (e.g. event types of other branches).
 */
const EXERCISED_ALERTS = ['CeleryTaskFailureRatioHigh', 'CeleryWorkerDown'];
const MAY_FIRE = ['CeleryTaskStuckStarted', 'CeleryBridgeRejectingEvents'];

const RULES_FILE = fileURLToPath(
  new URL('../../deploy/prometheus/rules/celery.rules.yml', import.meta.url),
);

/**
 * The rules as shipped, with every `for:` cut to 1 s: the shipped durations (1 to 15 minutes) are
 * what keeps a real deployment from paging on a blip, and waiting them out here would take a
 * quarter of an hour. The expressions are not touched, so what is tested is exactly what ships;
 * the `for:` clauses themselves are covered by the promtool tests (celery.test.yml).
 */
function testCopyOfRules(): string {
  const text = readFileSync(RULES_FILE, 'utf8');
  const copy = text.replace(/^(\s+)for: \S+$/gm, '$1for: 1s');
  expect(copy).not.toBe(text);
  return copy;
}

interface RangeResult {
  resultType: string;
  result: Array<{ metric: Record<string, string>; values: Array<[number, string]> }>;
}
interface Alert {
  labels: Record<string, string>;
  state: 'pending' | 'firing';
}
interface ExemplarSeries {
  seriesLabels: Record<string, string>;
  exemplars: Array<{ labels: Record<string, string>; value: string; timestamp: number }>;
}

const hasValues = (data: RangeResult): boolean =>
  data.result.some((series) => series.values.some(([, value]) => value !== 'NaN'));

describe('dashboards, alerts and exemplars on a real Prometheus', () => {
  const queue = randomName('prometheus');
  const bridgeQueue = randomName('bridge-prometheus');
  let receiver: OtlpReceiver;
  let bridge: HttpBridgeProcess;
  let worker: CeleryWorker;
  let proxy: Server;
  let prometheus: OwnPrometheus;
  let collectorNames: OwnPrometheus;
  const myTaskIds = new Set<string>();
  const failIds: string[] = [];

  /** Keep this test's worker's series; drop other workers' (series without a worker stay). */
  const onlyMyWorker = (hostname: string) => [
    {
      source_labels: ['celery_worker_hostname'],
      regex: hostname.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
      target_label: '__tmp_mine',
      replacement: '1',
    },
    // (?s): hostnames with line breaks exist (other runs' hostile-input tests send them).
    { source_labels: ['celery_worker_hostname', '__tmp_mine'], regex: '(?s).+;', action: 'drop' },
    { action: 'labeldrop', regex: '__tmp_mine' },
  ];

  const scrapeConfig = (target: string, hostname: string, extra: object = {}) =>
    JSON.stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      scrape_configs: [
        {
          job_name: 'celery-otel-bridge',
          static_configs: [{ targets: [target] }],
          metric_relabel_configs: onlyMyWorker(hostname),
        },
      ],
      ...extra,
    });

  beforeAll(async () => {
    await requireBroker('amqp');
    receiver = await OtlpReceiver.start();
    bridge = await startBridgeWithHttp([], {
      CELERY_BROKER_URL: AMQP_URL,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_METRIC_EXPORT_INTERVAL: '2000',
      OTEL_BSP_SCHEDULE_DELAY: '200',
      CELERY_OTEL_BRIDGE_AMQP_QUEUE: bridgeQueue,
      CELERY_OTEL_BRIDGE_QUEUES: queue,
      CELERY_OTEL_BRIDGE_QUEUE_LENGTH_INTERVAL_MS: '500',
    });
    await bridge.waitForLog(/"msg":"consuming/);
    worker = await startCeleryWorker({
      brokerUrl: AMQP_URL,
      queue,
      pool: 'prefork',
      concurrency: 2,
    });

    // The bridge's metrics as a Collector would name them, for a second Prometheus.
    proxy = createServer((_request, response) => {
      fetch(`${bridge.httpUrl}/metrics`)
        .then((r) => r.text())
        .then(
          (text) =>
            response.writeHead(200, { 'content-type': 'text/plain' }).end(collectorSpelling(text)),
          (error: unknown) => response.writeHead(502).end(String(error)),
        );
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const proxyPort = (proxy.address() as AddressInfo).port;

    const bridgeTarget = new URL(bridge.httpUrl).host;
    prometheus = await startPrometheus(
      scrapeConfig(bridgeTarget, worker.hostname, {
        rule_files: ['celery.rules.yml'],
        storage: { exemplars: { max_exemplars: 10000 } },
      }),
      { 'celery.rules.yml': testCopyOfRules() },
      ['--enable-feature=exemplar-storage'],
    );
    collectorNames = await startPrometheus(scrapeConfig(`127.0.0.1:${proxyPort}`, worker.hostname));
  }, 120_000);

  afterAll(async () => {
    await prometheus?.stop();
    await collectorNames?.stop();
    await new Promise((resolve) => (proxy ? proxy.close(resolve) : resolve(undefined)));
    await worker?.stop();
    await bridge?.stop();
    await receiver?.close();
    await deleteTestQueue(AMQP_URL, queue).catch(() => undefined);
    await deleteBridgeQueue(AMQP_URL, bridgeQueue).catch(() => undefined);
  }, 60_000);

  const sumNow = async (server: OwnPrometheus, expr: string): Promise<number> => {
    const data = await server.api<{ result: Array<{ value: [number, string] }> }>('query', {
      query: expr,
    });
    return data.result.reduce((total, r) => total + Number(r.value[1]), 0);
  };

  it('runs tasks that Prometheus sees through the bridge', async () => {
    const adds = (await produce(AMQP_URL, queue, 'adds', ['5']))['adds'] as string[];
    const chain = (await produce(AMQP_URL, queue, 'chain'))['chain'] as string[];
    const flaky = (await produce(AMQP_URL, queue, 'flaky'))['flaky'] as string;
    // A burst of failures: 9 of the 19 runs of this test fail. The first one alone: rate() and
    // increase() count only what a series gained after Prometheus first saw it, so a burst that
    // all lands before the first scrape of the new series would count as nothing (Prometheus
    // has no creation time for 0.0.4/OpenMetrics series without `_created`).
    // Both servers must have seen it: the second one starts later, and a CI run whose second
    // server first scraped after the whole burst had no rate() and no increase() to show there.
    failIds.push((await produce(AMQP_URL, queue, 'fail'))['fail'] as string);
    const firstFailure = `celery_tasks_total{celery_worker_hostname="${worker.hostname}",celery_task_state="failed"}`;
    await until(
      'both Prometheus servers to see the first failure',
      async () =>
        (await sumNow(prometheus, firstFailure)) >= 1 &&
        (await sumNow(collectorNames, firstFailure)) >= 1,
      60_000,
    );
    for (let batch = 0; batch < 2; batch++) {
      const ids = await Promise.all(
        [0, 1, 2, 3].map(async () => (await produce(AMQP_URL, queue, 'fail'))['fail'] as string),
      );
      failIds.push(...ids);
    }
    for (const id of [...adds, ...chain, flaky, ...failIds]) myTaskIds.add(id);
    // An invalid message, into the bridge's own queue only (never onto the shared exchange).
    const connection = await amqp.connect(AMQP_URL);
    try {
      const channel = await connection.createChannel();
      channel.sendToQueue(bridgeQueue, Buffer.from('{not json'), {
        contentType: 'application/json',
      });
      await channel.close();
    } finally {
      await connection.close();
    }
    const host = `celery_worker_hostname="${worker.hostname}"`;
    await until(
      'Prometheus to count every task of this test',
      async () =>
        (await sumNow(prometheus, `celery_tasks_total{${host},celery_task_state="succeeded"}`)) >=
          9 &&
        (await sumNow(prometheus, `celery_tasks_total{${host},celery_task_state="failed"}`)) >= 9 &&
        (await sumNow(prometheus, `celery_tasks_total{${host},celery_task_state="retried"}`)) >=
          2 &&
        (await sumNow(prometheus, 'celery_otel_bridge_events_rejected_total')) >= 1 &&
        (await sumNow(collectorNames, `celery_tasks_total{${host},celery_task_state="failed"}`)) >=
          9,
      90_000,
    );
    await receiver.waitForSpans(
      (spans) =>
        [...myTaskIds].every((id) =>
          spans.some((s) => s.kind === SPAN_KIND_CONSUMER && s.attributes['celery.task.id'] === id),
        ),
      60_000,
    );
    // Prometheus scrapes the bridge (OpenMetrics: see the exemplars below) without errors.
    const targets = await prometheus.api<{
      activeTargets: Array<{ health: string; lastError: string }>;
    }>('targets');
    expect(targets.activeTargets.map((t) => [t.health, t.lastError])).toEqual([['up', '']]);
  }, 240_000);

  it('parses every alert expression, and a burst of failures raises the failure-ratio alert', async () => {
    const rules = parseYaml(readFileSync(RULES_FILE, 'utf8')) as {
      groups: Array<{ rules: Array<{ alert: string; expr: string }> }>;
    };
    const alerts = rules.groups.flatMap((g) => g.rules);
    expect(alerts.length).toBeGreaterThanOrEqual(12);
    for (const rule of alerts) {
      for (const server of [prometheus, collectorNames]) {
        await expect(server.api('query', { query: rule.expr }), rule.alert).resolves.toBeDefined();
      }
    }
    // Prometheus loaded every rule of the test copy.
    const loaded = await prometheus.api<{
      groups: Array<{ rules: Array<{ name: string; health: string }> }>;
    }>('rules');
    const names = loaded.groups.flatMap((g) => g.rules).map((r) => [r.name, r.health]);
    expect(names).toEqual(alerts.map((r) => [r.alert, 'ok']));
    await until(
      'CeleryTaskFailureRatioHigh for proj.fail',
      async () => {
        const { alerts: active } = await prometheus.api<{ alerts: Alert[] }>('alerts');
        return active.some(
          (a) =>
            a.labels['alertname'] === 'CeleryTaskFailureRatioHigh' &&
            a.labels['celery_task_name'] === 'proj.fail',
        );
      },
      60_000,
    );
  }, 120_000);

  it('stores exemplars that carry the trace and span ids of task spans received over OTLP', async () => {
    const end = Date.now() / 1000;
    const query = async (selector: string) =>
      prometheus.api<ExemplarSeries[]>('query_exemplars', {
        query: selector,
        start: String(end - 600),
        end: String(end + 60),
      });
    const taskSpans = new Map(
      receiver.spans
        .filter((s) => s.kind === SPAN_KIND_CONSUMER)
        .map((s) => [`${s.traceId}/${s.spanId}`, s]),
    );
    for (const metric of ['celery_task_runtime', 'celery_task_queue_wait']) {
      const series = await until(
        `exemplars of ${metric}`,
        async () => {
          const found = await query(`{__name__=~"${metric}(_seconds)?_bucket"}`);
          return found.some((s) => s.exemplars.length > 0) ? found : undefined;
        },
        30_000,
      );
      for (const { seriesLabels, exemplars } of series) {
        expect(seriesLabels['celery_worker_hostname']).toBe(worker.hostname);
        for (const exemplar of exemplars) {
          const span = taskSpans.get(
            `${exemplar.labels['trace_id']}/${exemplar.labels['span_id']}`,
          );
          expect(
            span,
            `exemplar ${JSON.stringify(exemplar.labels)} is a received task span`,
          ).toBeDefined();
          expect(myTaskIds.has(String(span?.attributes['celery.task.id']))).toBe(true);
          expect(span?.name).toBe(seriesLabels['celery_task_name']);
          // The exemplar's value lies in its bucket.
          const le = seriesLabels['le'] === '+Inf' ? Infinity : Number(seriesLabels['le']);
          expect(Number(exemplar.value)).toBeLessThanOrEqual(le);
        }
      }
    }
    // A failing task is one click away: the failure series has an exemplar of a failed task.
    const failures = await query(
      '{__name__=~"celery_task_runtime(_seconds)?_bucket", celery_task_outcome="failure"}',
    );
    const failedTraces = failures.flatMap((s) => s.exemplars.map((e) => e.labels['span_id']));
    const failSpanIds = new Set(
      [...taskSpans.values()]
        .filter((s) => failIds.includes(String(s.attributes['celery.task.id'])))
        .map((s) => s.spanId),
    );
    expect(failedTraces.some((id) => failSpanIds.has(id ?? ''))).toBe(true);

    // The OTLP push carries the same kind of exemplars on its histogram data points.
    const myTaskSpanIds = new Set(
      [...taskSpans.values()]
        .filter((s) => myTaskIds.has(String(s.attributes['celery.task.id'])))
        .map((s) => s.spanId),
    );
    const pushed = await until(
      'OTLP metrics with exemplars of this test',
      () => {
        const exemplars = receiver.metrics
          .filter((m) => m.name === 'celery.task.runtime' || m.name === 'celery.task.queue_wait')
          .flatMap((m) => m.exemplars ?? []);
        return Promise.resolve(
          exemplars.some((e) => myTaskSpanIds.has(e.spanId)) ? exemplars : undefined,
        );
      },
      30_000,
    );
    // Each points at a task span that reached the receiver (spans may trail the push a moment).
    await receiver.waitForSpans((spans) =>
      pushed.every((e) =>
        spans.some(
          (s) => s.kind === SPAN_KIND_CONSUMER && s.traceId === e.traceId && s.spanId === e.spanId,
        ),
      ),
    );
  }, 90_000);

  it('raises CeleryWorkerDown when the worker is killed with kill -9', async () => {
    await produce(AMQP_URL, queue, 'slow');
    const host = `celery_worker_hostname="${worker.hostname}"`;
    await until(
      'the slow task to start',
      async () =>
        (await sumNow(
          prometheus,
          `celery_tasks_total{${host},celery_task_name="proj.slow",celery_task_state="started"}`,
        )) >= 1,
      60_000,
    );
    worker.kill9();
    await until(
      `CeleryWorkerDown for ${worker.hostname}`,
      async () => {
        const { alerts } = await prometheus.api<{ alerts: Alert[] }>('alerts');
        return alerts.some(
          (a) =>
            a.labels['alertname'] === 'CeleryWorkerDown' &&
            a.labels['celery_worker_hostname'] === worker.hostname,
        );
      },
      60_000,
    );
    const { alerts } = await prometheus.api<{ alerts: Alert[] }>('alerts');
    const others = alerts.filter(
      (a) => ![...EXERCISED_ALERTS, ...MAY_FIRE].includes(a.labels['alertname'] ?? ''),
    );
    expect(others.map((a) => a.labels)).toEqual([]);
  }, 120_000);

  it('evaluates every dashboard panel: each parses, each exercised one returns data', async () => {
    const dashboards = loadDashboards();
    const end = Math.floor(Date.now() / 1000);
    const range = { start: String(end - 240), end: String(end), step: '2' };
    const allValues = { queue: '.*', worker: '.*', task: '.*' };
    const mineValues = { queue, worker: worker.hostname, task: '.*' };
    // The By task dashboard shows one task: a panel has data when it has for one of these (the
    // slow task is the one seen in flight for several scrapes).
    const byTaskNames = ['proj.fail', 'proj.flaky', 'proj.add', 'proj.slow'];
    const missing: string[] = [];
    const unexpectedData: string[] = [];
    let evaluated = 0;
    for (const [file, dashboard] of dashboards) {
      // Dashboard variables resolve to this test's queue, worker and tasks.
      const expectedValues: Record<string, string> = {
        queue,
        worker: worker.hostname,
        task: 'proj.fail',
      };
      for (const variable of dashboard.templating.list.filter((v) => v.type === 'query')) {
        const expected = expectedValues[variable.name];
        if (expected === undefined) continue; // another dashboard's own variable
        const label = /^label_values\((\w+)\)$/.exec(variable.definition ?? '')?.[1] ?? '';
        const values = await prometheus.api<string[]>(`label/${label}/values`);
        expect(values, `${file}: $${variable.name}`).toContain(expected);
      }
      for (const panel of queryPanels(dashboard)) {
        const key = `${file}: ${panel.title}`;
        // Dashboards of other scenarios (e.g. celery beat's, beside these) must parse here; their
        // data is their own tests' business.
        const exercised = MY_DASHBOARDS.includes(file) && NOT_EXERCISED[key] === undefined;
        const tasks = file === 'by-task.json' ? byTaskNames : ['.*'];
        for (const [server, valueSets] of [
          [prometheus, [allValues, mineValues]],
          [collectorNames, [allValues]],
        ] as const) {
          for (const values of valueSets) {
            let data = false;
            let exemplarTargets = 0;
            let exemplarsFound = false;
            for (const task of tasks) {
              for (const target of panel.targets ?? []) {
                const expr = substitute(target.expr, { ...values, task }, '4m');
                // Parses: Prometheus answers success (api throws with its parse error otherwise).
                const result = await server.api<RangeResult>('query_range', {
                  query: expr,
                  ...range,
                });
                evaluated++;
                if (hasValues(result)) data = true;
                if (target.exemplar === true && server === prometheus) {
                  exemplarTargets++;
                  const exemplars = await server.api<ExemplarSeries[]>('query_exemplars', {
                    query: expr,
                    start: range.start,
                    end: range.end,
                  });
                  if (exemplars.some((s) => s.exemplars.length > 0)) exemplarsFound = true;
                }
              }
            }
            const where = `${key} (${server === prometheus ? 'bridge names' : 'Collector names'}, ${JSON.stringify(values)})`;
            // A panel with exemplars shown must have some (Collector-named metrics have none:
            // the text format carries no exemplars).
            if (exemplarTargets > 0 && !exemplarsFound) data = false;
            if (exercised && !data) missing.push(where);
            if (!exercised && data && MY_DASHBOARDS.includes(file)) unexpectedData.push(where);
          }
        }
      }
    }
    expect(evaluated).toBeGreaterThan(100);
    if (missing.length > 0) {
      for (const server of [prometheus, collectorNames])
        console.log(JSON.stringify(await server.api('targets'), null, 1));
    }
    expect(missing, 'panels the scenario exercises that returned no data').toEqual([]);
    // Once the metrics of NOT_EXERCISED land, their panels show data: then they belong here.
    if (unexpectedData.length > 0)
      console.log(`panels in NOT_EXERCISED that returned data:\n${unexpectedData.join('\n')}`);
  }, 240_000);
});
