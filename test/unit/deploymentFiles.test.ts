import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

/**
 * docker-compose.yml, otel-collector.yaml and the Dockerfiles, checked with real parsers (Docker
 * does not run here): `docker-compose config` (Debian's docker-compose v1, which validates the
 * file against the Compose schema and normalises it) and PyYAML (/usr/bin/python3's `yaml`, which
 * docker-compose itself uses), plus docs/deployment.md's table of images and ports, so the three agree.
 * scripts/setup-test-env.sh installs docker-compose; without it this test fails, never skips.
 */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string): string => readFileSync(`${ROOT}${path}`, 'utf8');

type Yaml = Record<string, unknown>;

function run(command: string, args: string[], input?: string): string {
  const env = { ...process.env };
  delete env['PYTHONHOME'];
  delete env['PYTHONPATH'];
  const result = spawnSync(command, args, { cwd: ROOT, input, encoding: 'utf8', env });
  if (result.error !== undefined || result.status !== 0) {
    throw new Error(
      `${command} ${args.join(' ')} failed (${result.error?.message ?? `exit ${result.status}`}):\n` +
        `${result.stderr}\nInstall it with scripts/setup-test-env.sh (apt-get install docker-compose python3-yaml).`,
    );
  }
  return result.stdout;
}

/** YAML -> plain data with PyYAML's safe loader. */
function parseYaml(text: string): Yaml {
  const json = run(
    '/usr/bin/python3',
    ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'],
    text,
  );
  return JSON.parse(json) as Yaml;
}

const obj = (value: unknown): Yaml => {
  expect(value, 'a mapping').toBeTypeOf('object');
  return (value ?? {}) as Yaml;
};

// Parsed once: `docker-compose config` validates and normalises (ports become {published, target}).
const compose = parseYaml(run('docker-compose', ['-f', 'docker-compose.yml', 'config']));
const services = obj(compose['services']);
const collector = parseYaml(read('otel-collector.yaml'));
const packageVersion = (JSON.parse(read('package.json')) as { version: string }).version;

interface DocumentedRow {
  images: string[];
  ports: number[];
}

/** docs/deployment.md "The compose stack" table: | `service` | `image` … | ports … | */
function documentedRows(): Map<string, DocumentedRow> {
  const doc = read('docs/deployment.md');
  const start = doc.indexOf('## The compose stack');
  expect(start, 'docs/deployment.md section "The compose stack"').toBeGreaterThan(-1);
  const end = doc.indexOf('\n## ', start + 1);
  const section = doc.slice(start, end === -1 ? undefined : end);
  const rows = new Map<string, DocumentedRow>();
  for (const line of section.split('\n')) {
    const cells = line.split('|').map((cell) => cell.trim());
    const name = /^`([a-z-]+)`$/.exec(cells[1] ?? '')?.[1];
    if (name === undefined || cells.length < 5) continue;
    rows.set(name, {
      images: [...(cells[2] ?? '').matchAll(/`([^`\s]+:[^`\s]+)`/g)].map((m) => m[1] ?? ''),
      ports: [...(cells[3] ?? '').matchAll(/\b(\d{2,5})\b/g)].map((m) => Number(m[1])),
    });
  }
  return rows;
}

function publishedPorts(service: Yaml): number[] {
  const ports = (service['ports'] ?? []) as Yaml[];
  return ports.map((port) => Number(port['published'])).sort((a, b) => a - b);
}

describe('docker-compose.yml', () => {
  it('is a valid Compose file with the whole stack', () => {
    expect(Object.keys(services).sort()).toEqual([
      'bridge',
      'demo-producer',
      'demo-worker',
      'grafana',
      'jaeger',
      'otel-collector',
      'prometheus',
      'rabbitmq',
      'redis',
    ]);
  });

  it('pins every image tag (no latest, no digest-less bare names)', () => {
    for (const [name, service] of Object.entries(services)) {
      const image = obj(service)['image'];
      expect(image, `${name}: image`).toBeTypeOf('string');
      const tag = /:([^/:]+)$/.exec(String(image))?.[1];
      expect(tag, `${name}: ${String(image)} has a tag`).toBeDefined();
      expect(tag, `${name}: ${String(image)}`).not.toBe('latest');
      expect(tag, `${name}: ${String(image)} is a full version`).toMatch(/\d+\.\d+\.\d+/);
    }
    expect(obj(services['bridge'])['image']).toBe(`celery-otel-bridge:${packageVersion}`);
    expect(obj(obj(services['bridge'])['build'])['dockerfile']).toBe('Dockerfile');
  });

  it('lists the same images and published ports as docs/deployment.md', () => {
    const rows = documentedRows();
    expect([...rows.keys()].sort()).toEqual(Object.keys(services).sort());
    for (const [name, service] of Object.entries(services)) {
      const row = rows.get(name);
      expect(row?.images, `docs/deployment.md image of ${name}`).toContain(obj(service)['image']);
      expect(
        [...(row?.ports ?? [])].sort((a, b) => a - b),
        `docs/deployment.md ports of ${name}`,
      ).toEqual(publishedPorts(obj(service)));
    }
  });

  it('points the bridge at the collector and the broker inside the stack', () => {
    const env = obj(obj(services['bridge'])['environment']);
    const endpoint = new URL(String(env['OTEL_EXPORTER_OTLP_ENDPOINT']));
    expect(endpoint.protocol).toBe('http:');
    expect(endpoint.hostname).toBe('otel-collector');
    expect(endpoint.port).toBe('4318');
    const broker = new URL(String(env['CELERY_BROKER_URL']));
    expect(Object.keys(services)).toContain(broker.hostname);
    // The collector listens for OTLP/HTTP on that port, on every interface.
    const http = obj(obj(obj(obj(collector['receivers'])['otlp'])['protocols'])['http']);
    expect(http['endpoint']).toBe('0.0.0.0:4318');
  });

  it('mounts otel-collector.yaml where the collector reads its config', () => {
    const service = obj(services['otel-collector']);
    const volumes = service['volumes'] as string[];
    const mount = volumes.find((volume) => volume.includes('otel-collector.yaml'));
    expect(mount).toBeDefined();
    const [source, target] = (mount ?? '').split(':');
    expect(existsSync(source ?? '')).toBe(true);
    expect(service['command']).toEqual([`--config=${target ?? ''}`]);
  });

  it('runs the demo worker with -E and a producer with task_send_sent_event', () => {
    expect(obj(services['demo-worker'])['command']).toContain('-E');
    expect(obj(services['demo-producer'])['command']).toEqual(['python', 'producer.py']);
    const demo = read('examples/demo/demo.py');
    expect(demo).toContain('task_send_sent_event=True');
    expect(demo).toContain('worker_send_task_events=True');
    for (const line of read('examples/demo/requirements.txt').split('\n')) {
      if (line.trim() !== '' && !line.startsWith('#')) expect(line).toMatch(/^[\w[\]-]+==\d+\.\d+/);
    }
  });
});

/** `/host/path:/container/path[:ro]` mounts of a service, as [host path, container path]. */
function mounts(service: Yaml): Array<[string, string]> {
  return ((service['volumes'] ?? []) as string[]).map((volume) => {
    const [source = '', target = ''] = volume.split(':');
    return [source, target];
  });
}

function mountOf(service: Yaml, hostPath: string): string {
  // `docker-compose config` resolves `./x` against the compose file's directory.
  const absolute = `${ROOT}${hostPath.replace(/^\.\//, '')}`;
  const found = mounts(service).find(([source]) => source.replace(/\/$/, '') === absolute);
  expect(found, `a mount of ${hostPath}`).toBeDefined();
  expect(existsSync(absolute), `${hostPath} exists`).toBe(true);
  return found?.[1] ?? '';
}

describe('Prometheus and Grafana in docker-compose.yml', () => {
  const prometheus = obj(services['prometheus']);
  const grafana = obj(services['grafana']);
  const prometheusConfig = parseYaml(read('deploy/prometheus/prometheus.yml'));

  it('runs Prometheus on deploy/prometheus/prometheus.yml with exemplar storage', () => {
    const command = prometheus['command'] as string[];
    const config = mountOf(prometheus, './deploy/prometheus/prometheus.yml');
    expect(command).toContain(`--config.file=${config}`);
    expect(command).toContain('--enable-feature=exemplar-storage');
    // Its rule_files glob, relative to the config file, is where the rules directory is mounted.
    const rulesDir = mountOf(prometheus, './deploy/prometheus/rules');
    const globs = prometheusConfig['rule_files'] as string[];
    expect(globs.map((glob) => `${config.replace(/[^/]+$/, '')}${glob}`)).toEqual([
      `${rulesDir}/*.rules.yml`,
    ]);
    expect(obj(obj(prometheusConfig['storage'])['exemplars'])['max_exemplars']).toBeGreaterThan(0);
    // promtool (Debian's prometheus) checks the config and the rule files it loads.
    expect(run('promtool', ['check', 'config', 'deploy/prometheus/prometheus.yml'])).toMatch(
      /SUCCESS: \d+ rule files found/,
    );
  });

  it('scrapes the bridge on the port its HTTP listener uses', () => {
    const jobs = prometheusConfig['scrape_configs'] as Yaml[];
    const job = jobs.find((j) => j['job_name'] === 'celery-otel-bridge');
    const targets = obj((job?.['static_configs'] as Yaml[])[0])['targets'] as string[];
    const bridge = obj(services['bridge']);
    const port = String(obj(bridge['environment'])['CELERY_OTEL_BRIDGE_HTTP_PORT']);
    expect(targets).toEqual([`bridge:${port}`]);
    expect((bridge['expose'] as string[]).map(String)).toContain(port);
  });

  it('provisions Grafana with Prometheus and Jaeger (exemplars link to traces) and the dashboards', () => {
    const provisioning = mountOf(grafana, './deploy/grafana/provisioning');
    expect(provisioning).toBe('/etc/grafana/provisioning');
    const datasources = obj(
      parseYaml(read('deploy/grafana/provisioning/datasources/datasources.yml')),
    )['datasources'] as Yaml[];
    const byType = (type: string): Yaml => obj(datasources.find((d) => d['type'] === type));
    const prom = byType('prometheus');
    const jaeger = byType('jaeger');
    const promUrl = new URL(String(prom['url']));
    expect(promUrl.hostname).toBe('prometheus');
    expect(publishedPorts(prometheus)).toEqual([Number(promUrl.port)]);
    const jaegerUrl = new URL(String(jaeger['url']));
    expect(Object.keys(services)).toContain(jaegerUrl.hostname);
    expect(publishedPorts(obj(services['jaeger']))).toContain(Number(jaegerUrl.port));
    // The exemplar label the bridge writes (src/metrics/OpenMetricsSerializer.ts) opens Jaeger.
    const destinations = obj(prom['jsonData'])['exemplarTraceIdDestinations'] as Yaml[];
    expect(destinations).toEqual([{ name: 'trace_id', datasourceUid: jaeger['uid'] }]);
    expect(read('src/metrics/OpenMetricsSerializer.ts')).toContain('{trace_id="');

    const providers = obj(parseYaml(read('deploy/grafana/provisioning/dashboards/dashboards.yml')))[
      'providers'
    ] as Yaml[];
    const dashboardsDir = mountOf(grafana, './deploy/grafana/dashboards');
    expect(providers.map((p) => obj(p['options'])['path'])).toEqual([dashboardsDir]);
  });
});

describe('otel-collector.yaml', () => {
  const pipelines = obj(obj(collector['service'])['pipelines']);

  it('has traces and metrics pipelines that use only defined components', () => {
    expect(Object.keys(pipelines).sort()).toEqual(['metrics', 'traces']);
    for (const [name, pipeline] of Object.entries(pipelines)) {
      for (const kind of ['receivers', 'processors', 'exporters']) {
        const used = obj(pipeline)[kind] as string[];
        expect(used.length, `${name}.${kind}`).toBeGreaterThan(0);
        for (const component of used) {
          expect(Object.keys(obj(collector[kind])), `${name} uses ${kind} ${component}`).toContain(
            component,
          );
        }
      }
    }
  });

  it('receives OTLP on 4317 and 4318, batches, and sends traces to Jaeger over OTLP', () => {
    const protocols = obj(obj(obj(collector['receivers'])['otlp'])['protocols']);
    expect(obj(protocols['grpc'])['endpoint']).toBe('0.0.0.0:4317');
    expect(obj(protocols['http'])['endpoint']).toBe('0.0.0.0:4318');
    expect(obj(pipelines['traces'])['processors']).toEqual(['batch']);
    expect(obj(pipelines['traces'])['exporters']).toEqual(['otlp/jaeger', 'debug']);
    expect(obj(pipelines['metrics'])['exporters']).toEqual(['debug']);
    const jaeger = obj(obj(collector['exporters'])['otlp/jaeger']);
    expect(jaeger['endpoint']).toBe('jaeger:4317');
    expect(Object.keys(services)).toContain('jaeger');
    // The example Tempo and Prometheus exporters are there, commented out.
    const text = read('otel-collector.yaml');
    expect(text).toMatch(/^ {2}# otlp\/tempo:$/m);
    expect(text).toMatch(/^ {2}# prometheus:$/m);
  });
});

describe('Dockerfiles', () => {
  const stages = (text: string): string[][] =>
    text
      .split(/^FROM /m)
      .slice(1)
      .map((stage) => `FROM ${stage}`.split('\n').filter((l) => l.trim() && !l.startsWith('#')));

  it.each(['Dockerfile', 'examples/demo/Dockerfile'])('%s pins its base images', (path) => {
    for (const stage of stages(read(path))) {
      const image = stage[0]?.split(/\s+/)[1] ?? '';
      expect(image, path).toMatch(/:\d+\.\d+\.\d+/);
      expect(image, path).not.toMatch(/:latest$/);
    }
  });

  it.each(['Dockerfile', 'examples/demo/Dockerfile'])('%s runs as a non-root user', (path) => {
    const last = stages(read(path)).at(-1) ?? [];
    const users = last.filter((line) => line.startsWith('USER '));
    expect(users.length, path).toBeGreaterThan(0);
    expect(users.at(-1)).not.toMatch(/^USER (root|0)(:|$)/);
  });

  it('builds with dev dependencies and ships production dependencies and dist only', () => {
    const [build, runStage] = stages(read('Dockerfile'));
    // The current Node LTS, pinned by digest; both stages on the same image.
    expect(build?.[0]).toMatch(/^FROM node:26\.\d+\.\d+-\S+@sha256:[0-9a-f]{64} AS build$/);
    expect(build).toContain('RUN npm run build');
    expect(runStage?.[0]).toMatch(/^FROM node:26\.\S+-(slim|alpine)@sha256:[0-9a-f]{64}$/);
    expect(runStage?.[0]).toBe(build?.[0]?.replace(/ AS build$/, ''));
    expect(runStage?.join('\n')).toContain('npm ci --omit=dev --ignore-scripts');
    expect(runStage).toContain('COPY --from=build /app/dist ./dist');
    expect(runStage?.at(-2)).toBe('USER node');
    expect(runStage?.at(-1)).toBe('ENTRYPOINT ["node", "dist/main.js"]');
  });
});

describe('the package', () => {
  it('builds an executable dist/main.js with a node shebang (the `bin` of package.json)', () => {
    const pkg = JSON.parse(read('package.json')) as { bin: Record<string, string> };
    expect(pkg.bin['celery-otel-bridge']).toBe('dist/main.js');
    expect(read('dist/main.js').split('\n')[0]).toBe('#!/usr/bin/env node');
    expect(() => accessSync(`${ROOT}dist/main.js`, constants.X_OK)).not.toThrow();
    // Run as npm's bin link runs it: the file itself, through its shebang.
    const help = spawnSync(`${ROOT}dist/main.js`, ['--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('--exporter');
    expect(help.stdout).toContain('--enable-events');
    expect(help.stdout).toContain('Exit codes:');
  });
});
