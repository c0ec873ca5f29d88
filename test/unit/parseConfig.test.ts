import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { parseBrokerUrl } from '../../src/config/brokerUrl.js';
import { helpText } from '../../src/config/helpText.js';
import { OPTION_GROUPS, OPTION_SPECS, type OptionSpec } from '../../src/config/optionSpecs.js';
import { parseConfig } from '../../src/config/parseConfig.js';
import { configError, runOptions } from '../support/configHelpers.js';

describe('parseConfig', () => {
  it('defaults to the local broker and collector, Celery style', () => {
    const options = runOptions([]);
    expect(options.broker).toMatchObject({
      kind: 'amqp',
      hostname: 'localhost',
      port: 5672,
      vhost: '/',
      username: 'guest',
    });
    expect(options.otlp).toMatchObject({
      url: 'http://localhost:4318/v1/traces',
      protocol: 'http/protobuf',
      compression: 'none',
      serviceName: 'celery',
      headers: {},
    });
    expect(options.eventsExchange).toBe('celeryev');
    expect(options.assembler.captureArgs).toBe(false);
    expect(options.assembler.captureResult).toBe(false);
    expect(options.exportQueue).toEqual({
      scheduleDelayMs: 5000,
      exportTimeoutMs: 30000,
      maxQueueSize: 20480,
      maxExportBatchSize: 512,
      maxConcurrentExports: 4,
    });
  });

  it('reads the standard OTEL variables with their standard precedence', () => {
    const options = runOptions([], {
      CELERY_BROKER_URL: 'redis://:pw@redis.internal:6380/3',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/',
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20abc,x-tenant=a',
      OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'x-tenant=b',
      OTEL_EXPORTER_OTLP_COMPRESSION: 'gzip',
      OTEL_SERVICE_NAME: 'billing-workers',
      OTEL_RESOURCE_ATTRIBUTES: 'deployment.environment=prod,team=pay%2Cments',
      OTEL_BSP_SCHEDULE_DELAY: '200',
      OTEL_BSP_MAX_QUEUE_SIZE: '100',
      OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '10',
      OTEL_BSP_EXPORT_TIMEOUT: '1000',
    });
    expect(options.broker).toMatchObject({
      kind: 'redis',
      hostname: 'redis.internal',
      port: 6380,
      db: 3,
      password: 'pw',
    });
    expect(options.redis.fanoutPrefix).toBe('/3.');
    expect(options.otlp).toMatchObject({
      url: 'http://collector:4318/v1/traces',
      protocol: 'http/json',
      compression: 'gzip',
      serviceName: 'billing-workers',
      headers: { authorization: 'Bearer abc', 'x-tenant': 'b' },
      resourceAttributes: { 'deployment.environment': 'prod', team: 'pay,ments' },
    });
    expect(options.exportQueue).toEqual({
      scheduleDelayMs: 200,
      // Raised to the exporter's own timeout (OTEL_EXPORTER_OTLP_TIMEOUT, 10000 by default).
      exportTimeoutMs: 10_000,
      maxQueueSize: 100,
      maxExportBatchSize: 10,
      maxConcurrentExports: 4,
    });
    // A queue timeout longer than the exporter's is kept as set.
    expect(
      runOptions([], { OTEL_BSP_EXPORT_TIMEOUT: '45000', OTEL_EXPORTER_OTLP_TIMEOUT: '5000' })
        .exportQueue.exportTimeoutMs,
    ).toBe(45_000);
    expect(
      runOptions([], { OTEL_BSP_EXPORT_TIMEOUT: '2000', OTEL_EXPORTER_OTLP_TRACES_TIMEOUT: '7000' })
        .exportQueue.exportTimeoutMs,
    ).toBe(7000);
    // The signal-specific endpoint is used as is.
    expect(
      runOptions([], { OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'https://tempo:4318/custom' }).otlp.url,
    ).toBe('https://tempo:4318/custom');
  });

  it('refuses an OTLP timeout of 0, as the SDK exporters do, naming the variable', () => {
    for (const variable of [
      'OTEL_EXPORTER_OTLP_TIMEOUT',
      'OTEL_EXPORTER_OTLP_TRACES_TIMEOUT',
      'OTEL_EXPORTER_OTLP_METRICS_TIMEOUT',
    ]) {
      expect(configError([], { [variable]: '0' })).toContain(
        `${variable} must be a whole number of at least 1`,
      );
    }
    expect(runOptions([], { OTEL_EXPORTER_OTLP_TIMEOUT: '1' }).otlp.timeoutMs).toBe(1);
  });

  it('lets a flag beat its variable', () => {
    const options = runOptions(
      ['--broker', 'amqp://u:p@rabbit:5672/prod', '--capture-args', '--service-name', 'x'],
      {
        CELERY_BROKER_URL: 'redis://localhost',
        CELERY_OTEL_BRIDGE_CAPTURE_ARGS: 'false',
        OTEL_SERVICE_NAME: 'y',
      },
    );
    expect(options.broker).toMatchObject({ kind: 'amqp', hostname: 'rabbit', vhost: 'prod' });
    expect(options.assembler.captureArgs).toBe(true);
    expect(options.otlp.serviceName).toBe('x');
  });

  it('accepts every broker scheme Celery users write', () => {
    expect(parseBrokerUrl('amqp://guest:guest@localhost:5672//')).toMatchObject({
      vhost: '/',
      tls: false,
    });
    expect(parseBrokerUrl('pyamqp://localhost')).toMatchObject({ kind: 'amqp', vhost: '/' });
    expect(parseBrokerUrl('amqps://h/v%2Fx')).toMatchObject({
      kind: 'amqp',
      tls: true,
      port: 5671,
      vhost: 'v/x',
    });
    expect(parseBrokerUrl('rediss://h:6390/2')).toMatchObject({ kind: 'redis', tls: true, db: 2 });
    expect(parseBrokerUrl('redis://localhost')).toMatchObject({ db: 0, port: 6379 });
  });

  it('explains invalid input and never repeats a password', () => {
    expect(configError(['--nope'])).toContain("Unknown option '--nope'");
    expect(configError([], { CELERY_BROKER_URL: 'kafka://u:hunter2@h' })).toContain(
      'is not supported',
    );
    expect(configError([], { CELERY_BROKER_URL: 'kafka://u:hunter2@h' })).not.toContain('hunter2');
    expect(configError([], { CELERY_BROKER_URL: 'amqp://u:hunter2@' })).not.toContain('hunter2');
    expect(configError([], { CELERY_BROKER_URL: 'redis://u:hunter2@h/abc' })).not.toContain(
      'hunter2',
    );
    expect(configError(['--max-in-flight-tasks', '0'])).toContain('--max-in-flight-tasks');
    expect(configError(['--max-in-flight-tasks', '12abc'])).toContain(
      'CELERY_OTEL_BRIDGE_MAX_IN_FLIGHT_TASKS',
    );
    expect(configError([], { CELERY_OTEL_BRIDGE_CAPTURE_ARGS: 'maybe' })).toContain(
      'true or false',
    );
    expect(configError([], { OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318' })).toContain('http://');
    expect(configError([], { OTEL_EXPORTER_OTLP_ENDPOINT: 'not a url' })).toContain('is not a URL');
    expect(configError([], { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' })).toContain('4318');
    expect(configError([], { OTEL_EXPORTER_OTLP_COMPRESSION: 'zstd' })).toContain('gzip or none');
    expect(configError([], { OTEL_BSP_MAX_QUEUE_SIZE: '-1' })).toContain('OTEL_BSP_MAX_QUEUE_SIZE');
    const headerError = configError([], { OTEL_EXPORTER_OTLP_HEADERS: 'authorization=%E0%A4%A' });
    expect(headerError).toContain('authorization');
    expect(headerError).not.toContain('%E0');
  });

  it('names the flag and its variable, or the SDK variable, for a number out of range', () => {
    expect(configError(['--amqp-prefetch', '0'])).toBe(
      '--amqp-prefetch (CELERY_OTEL_BRIDGE_AMQP_PREFETCH) must be a whole number of at least 1, not "0"',
    );
    expect(configError([], { OTEL_BSP_MAX_EXPORT_BATCH_SIZE: '1.5' })).toBe(
      'OTEL_BSP_MAX_EXPORT_BATCH_SIZE must be a whole number of at least 1, not "1.5"',
    );
    expect(configError([], { CELERY_OTEL_BRIDGE_CAPTURE_ARGS: 'maybe' })).toBe(
      '--capture-args (CELERY_OTEL_BRIDGE_CAPTURE_ARGS) must be true or false, not "maybe"',
    );
  });

  it('takes the span attribute limit from the flag, else the span variable, else the generic one', () => {
    const limit = (argv: string[], env: Record<string, string>): number =>
      runOptions(argv, env).maxAttributeLength;
    expect(limit([], {})).toBe(32768);
    expect(limit([], { OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '500' })).toBe(500);
    expect(
      limit([], {
        OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '500',
        OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '700',
      }),
    ).toBe(700);
    expect(
      limit([], {
        OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT: '500',
        OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '',
      }),
    ).toBe(500);
    expect(
      limit(['--max-attribute-length', '100'], { OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '700' }),
    ).toBe(100);
    expect(configError([], { OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT: '10' })).toContain(
      'at least 64',
    );
  });

  it('maps kombu Redis transport options to channel prefixes', () => {
    expect(
      runOptions(['--broker', 'redis://h/5', '--redis-fanout-prefix', 'false']).redis.fanoutPrefix,
    ).toBe('');
    expect(
      runOptions(['--broker', 'redis://h/5', '--redis-fanout-prefix', 'app{db}:']).redis
        .fanoutPrefix,
    ).toBe('app5:');
    expect(
      runOptions(['--broker', 'redis://h/5', '--redis-global-keyprefix', 'tenant1:']).redis
        .globalKeyPrefix,
    ).toBe('tenant1:');
  });

  it('parses --help, --help-all and --version as commands', () => {
    expect(parseConfig(['--help'], {})).toEqual({ command: 'help', scope: 'common' });
    expect(parseConfig(['-h'], {})).toEqual({ command: 'help', scope: 'common' });
    expect(parseConfig(['--help-all'], {})).toEqual({ command: 'help', scope: 'all' });
    expect(parseConfig(['--version'], {})).toEqual({ command: 'version' });
  });
});

describe('--help', () => {
  /** The help's lines from `title:` to the next blank line. */
  const sectionOf = (text: string, title: string): string => {
    const start = text.indexOf(`\n${title}:\n`);
    expect(start, title).toBeGreaterThan(-1);
    const end = text.indexOf('\n\n', start + 1);
    return text.slice(start, end === -1 ? undefined : end);
  };
  /** Where `--flag` heads its description (`  --flag <value>` on a line of its own), or -1. */
  const describedAt = (text: string, flag: string): number =>
    text.search(new RegExp(`^  --${flag}( <value>)?$`, 'm'));
  /** Where `--flag` is named in a `more:` list (whole, not the start of `--flag-more`), or -1. */
  const namedAt = (text: string, flag: string): number =>
    text.search(new RegExp(`(more: |, |^ +)--${flag}(,|$)`, 'm'));
  /** The description under `--flag`, its wrapped lines joined by single spaces. */
  const descriptionOf = (text: string, flag: string): string => {
    const lines = text.slice(describedAt(text, flag)).split('\n').slice(1);
    const end = lines.findIndex((line) => !line.startsWith('      '));
    return lines
      .slice(0, end === -1 ? undefined : end)
      .map((line) => line.trim())
      .join(' ');
  };
  const titleOf = (spec: OptionSpec): string =>
    OPTION_GROUPS.find((group) => group.id === spec.group)?.title ?? '';

  it('--help-all describes every option, with its variable and default, under its group', () => {
    const text = helpText('1.2.3', 'all');
    for (const spec of OPTION_SPECS) {
      const section = sectionOf(text, titleOf(spec));
      expect(describedAt(section, spec.flag), `--${spec.flag} under ${titleOf(spec)}`).toBe(
        section.indexOf(`\n  --${spec.flag}`) + 1,
      );
      const description = descriptionOf(section, spec.flag);
      expect(description).toContain(spec.help);
      expect(description).toContain(`env ${spec.env}`);
      if (spec.default !== undefined && spec.default !== '') {
        expect(description).toContain(`default ${spec.default}`);
      }
    }
    for (const line of text.split('\n')) {
      if (!line.includes('://')) expect(line.length, line).toBeLessThanOrEqual(100);
    }
  });

  it('prints the groups in order, essential options first in each', () => {
    const text = helpText('1.2.3', 'all');
    const starts = OPTION_GROUPS.map((group) => text.indexOf(`\n${group.title}:\n`));
    expect(starts.every((start) => start > -1)).toBe(true);
    expect([...starts].sort((a, b) => a - b)).toEqual(starts);
    for (const group of OPTION_GROUPS) {
      const section = sectionOf(text, group.title);
      const specs = OPTION_SPECS.filter((spec) => spec.group === group.id);
      expect(specs.length, group.id).toBeGreaterThan(0);
      const lastEssential = Math.max(
        -1,
        ...specs.filter((spec) => spec.essential).map((spec) => describedAt(section, spec.flag)),
      );
      for (const spec of specs.filter((candidate) => !candidate.essential)) {
        expect(describedAt(section, spec.flag), `--${spec.flag}`).toBeGreaterThan(lastEssential);
      }
    }
  });

  it('--help describes the essential options and names every other one in its group', () => {
    const text = helpText('1.2.3');
    expect(text).toContain('--help-all');
    const essential = OPTION_SPECS.filter((spec) => spec.essential);
    expect(essential.length).toBeGreaterThan(3);
    expect(essential.length).toBeLessThan(OPTION_SPECS.length / 4);
    for (const spec of OPTION_SPECS) {
      const section = sectionOf(text, titleOf(spec));
      if (spec.essential) {
        expect(describedAt(section, spec.flag), `--${spec.flag} described`).toBeGreaterThan(-1);
        expect(descriptionOf(section, spec.flag)).toContain(`env ${spec.env}`);
      } else {
        // The rest are only named, on their group's `more:` line.
        expect(namedAt(section, spec.flag), `--${spec.flag} named`).toBeGreaterThan(-1);
        expect(describedAt(section, spec.flag), `--${spec.flag} described`).toBe(-1);
        expect(section, `--${spec.flag} described`).not.toContain(`env ${spec.env},`);
      }
    }
    for (const line of text.split('\n')) {
      if (!line.includes('://')) expect(line.length, line).toBeLessThanOrEqual(100);
    }
  });
});

describe('docs/configuration.md', () => {
  const doc = readFileSync(new URL('../../docs/configuration.md', import.meta.url), 'utf8');
  const rowOf = (text: string, flag: string): string | undefined =>
    text.split('\n').find((line) => new RegExp(`^\\|\\s*\`--${flag}\`\\s*\\|`).test(line));

  it('documents every flag with its variable and default, under its --help topic', () => {
    for (const spec of OPTION_SPECS) {
      const title = OPTION_GROUPS.find((group) => group.id === spec.group)?.title ?? '';
      const start = doc.indexOf(`\n### ${title}\n`);
      expect(start, `docs/configuration.md section "${title}"`).toBeGreaterThan(-1);
      const end = doc.indexOf('\n#', start + 1);
      const row = rowOf(doc.slice(start, end === -1 ? undefined : end), spec.flag);
      expect(row, `docs/configuration.md row for --${spec.flag} under "${title}"`).toBeDefined();
      expect(row).toContain(`\`${spec.env}\``);
      if (spec.default !== undefined && spec.default !== '') expect(row).toContain(spec.default);
    }
  });

  it('documents no option the bridge does not have', () => {
    const flags = [...doc.matchAll(/^\|\s*`--([a-z0-9-]+)`\s*\|/gm)].map((match) => match[1]);
    expect(flags.sort()).toEqual(OPTION_SPECS.map((spec) => spec.flag).sort());
  });
});

describe("the README's option list", () => {
  const readme = readFileSync(new URL('../../README.md', import.meta.url), 'utf8');
  const rows = [...readme.matchAll(/^\|\s*`--([a-z0-9-]+)`\s*\|\s*`([A-Z0-9_]+)`\s*\|([^|]*)\|/gm)];

  it('names only real options, with their variable and default', () => {
    expect(rows.length).toBeGreaterThan(0);
    for (const [, flag, env, defaultCell] of rows) {
      const spec = OPTION_SPECS.find((candidate) => candidate.flag === flag);
      expect(spec, `README row for --${flag}`).toBeDefined();
      expect(env, `README variable of --${flag}`).toBe(spec?.env);
      if (spec?.default !== undefined && spec.default !== '') {
        expect(defaultCell, `README default of --${flag}`).toContain(`\`${spec.default}\``);
      }
    }
  });

  it('shows the essential options, the ones --help describes', () => {
    const essential = OPTION_SPECS.filter((spec) => spec.essential).map((spec) => spec.flag);
    expect(rows.map((row) => row[1]).sort()).toEqual(essential.sort());
  });
});
