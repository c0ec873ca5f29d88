import { createHash } from 'node:crypto';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../shared/errors.js';
import { redactUrl } from '../log/redact.js';
import type { LogLevel } from '../log/Logger.js';
import type { BridgeOptions } from './BridgeOptions.js';
import type { WorkerAttributeOptions } from '../metrics/MetricsOptions.js';
import type {
  OtlpProtocol,
  OtlpSignalOptions,
  TraceExporterKind,
} from '../export/ExportOptions.js';
import { brokerTlsSettings } from './brokerTlsSettings.js';
import { defaultStateDirectory } from './defaultStateDirectory.js';
import { parseBrokerUrl } from './brokerUrl.js';
import { type BrokerEndpoint } from '../brokers/BrokerOptions.js';
import { withSentinelOptions } from './parseKombuOnlyUrl.js';
import { parseServiceNameRules } from './parseServiceNameRules.js';
import { resourceDetectors } from './resourceDetectors.js';
import type { HelpScope } from './helpText.js';
import { OPTION_SPECS, optionLabel, specFor } from './optionSpecs.js';

export type ParsedCommand =
  | { readonly command: 'run'; readonly options: BridgeOptions }
  | { readonly command: 'help'; readonly scope: HelpScope }
  | { readonly command: 'version' };

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The one place where flags and environment become typed options. A flag beats its environment
 * variable, which beats the default. Invalid input throws ConfigError naming the flag and the
 * variable, so the user knows which of the two to fix.
 */
export function parseConfig(argv: readonly string[], env: Env): ParsedCommand {
  const flags = parseFlags(argv);
  if (flags['help-all'] === true) return { command: 'help', scope: 'all' };
  if (flags['help'] === true) return { command: 'help', scope: 'common' };
  if (flags['version'] === true) return { command: 'version' };

  const raw = (flag: string): string => {
    const spec = specFor(flag);
    const fromFlag = flags[flag];
    if (typeof fromFlag === 'string') return fromFlag;
    if (fromFlag === true) return 'true';
    const fromEnv = env[spec.env];
    if (fromEnv !== undefined && fromEnv.trim() !== '') return fromEnv.trim();
    return spec.default ?? '';
  };
  const integer = (flag: string): number =>
    wholeNumber(raw(flag), specFor(flag).min ?? 0, optionLabel(flag));
  const boolean = (flag: string): boolean => parseBoolean(flag, raw(flag));

  const brokerUrl = parseBrokerUrl(raw('broker'));
  const tlsSettings = brokerTlsSettings(brokerUrl, {
    caFile: raw('broker-tls-ca-file'),
    certFile: raw('broker-tls-cert-file'),
    keyFile: raw('broker-tls-key-file'),
    servername: raw('broker-tls-servername'),
    insecure: boolean('broker-tls-insecure'),
  });
  const broker: BrokerEndpoint = withSentinelOptions(
    tlsSettings === undefined ? brokerUrl : { ...brokerUrl, tlsSettings },
    raw('redis-sentinel-master'),
    raw('redis-sentinel-password'),
  );
  const logLevel = raw('log-level');
  if (!['debug', 'info', 'warn', 'error'].includes(logLevel)) {
    throw new ConfigError(
      `--log-level must be debug, info, warn or error, not ${JSON.stringify(logLevel)}`,
    );
  }
  const exporter = traceExporter(flags['exporter'], env);
  const maxAttributeLength = integer('max-attribute-length');
  const tracesExport = otlpSignal('TRACES', flags, env);
  return {
    command: 'run',
    options: {
      broker,
      eventsExchange: nonEmpty('events-exchange', raw('events-exchange')),
      amqp: {
        queueName: nonEmpty('amqp-queue', raw('amqp-queue')),
        queueMaxBytes: integer('amqp-queue-max-bytes'),
        queueMessageTtlMs: integer('amqp-queue-ttl-ms'),
        queueExpiresMs: integer('amqp-queue-expires-ms'),
        prefetchCount: integer('amqp-prefetch'),
      },
      redis: {
        globalKeyPrefix: raw('redis-global-keyprefix'),
        fanoutPrefix: fanoutPrefix(raw('redis-fanout-prefix'), broker.db),
        ...(broker.sentinel !== undefined && raw('redis-fanout-prefix') === 'true'
          ? { unformattedFanoutPrefix: '/{db}.' }
          : {}),
        maxBufferedBytes: integer('redis-max-buffered-bytes'),
      },
      otlp: {
        ...tracesExport,
        serviceName: nonEmpty('service-name', raw('service-name')),
        serviceNameRules: parseServiceNameRules(raw('service-name-map')),
        resourceAttributes: parseKeyValueList(
          'OTEL_RESOURCE_ATTRIBUTES',
          env['OTEL_RESOURCE_ATTRIBUTES'],
        ),
      },
      metrics: {
        otlp: otlpSignal('METRICS', flags, env),
        otlpEnabled: metricsExporterEnabled(env),
        // https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#periodic-exporting-metricreader
        exportIntervalMs: envInteger(env, ['OTEL_METRIC_EXPORT_INTERVAL'], 60_000, 1),
        exportTimeoutMs: envInteger(env, ['OTEL_METRIC_EXPORT_TIMEOUT'], 30_000, 1),
        resourceDetectors: resourceDetectors(env['OTEL_NODE_RESOURCE_DETECTORS']),
        httpHost: nonEmpty('http-host', raw('http-host')),
        httpPort: integer('http-port'),
        workerAttribute: workerAttribute(raw('metrics-worker'), raw('metrics-worker-strip')),
        maxTaskNames: integer('metrics-max-task-names'),
        queues: raw('queues')
          .split(',')
          .map((name) => name.trim())
          .filter((name) => name !== ''),
        queueLengthIntervalMs: integer('queue-length-interval-ms'),
        workerForgetAfterMs: integer('worker-forget-after-ms'),
      },
      // https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#batch-span-processor
      exportQueue: {
        // The console prints trees for a person watching: batches go out at once.
        scheduleDelayMs: envInteger(
          env,
          ['OTEL_BSP_SCHEDULE_DELAY'],
          exporter === 'console' ? 100 : 5000,
        ),
        // Never shorter than the exporter's own timeout (OTEL_EXPORTER_OTLP_TIMEOUT, retries
        // included): the queue puts a timed-out batch back for a retry, and if the exporter were
        // still sending it, the collector would get the spans twice.
        exportTimeoutMs: Math.max(
          envInteger(env, ['OTEL_BSP_EXPORT_TIMEOUT'], 30_000),
          tracesExport.timeoutMs,
        ),
        // The spec's 2048 is sized for one application; a bridge carries a whole fleet's tasks.
        maxQueueSize: envInteger(env, ['OTEL_BSP_MAX_QUEUE_SIZE'], 20_480, 1),
        maxExportBatchSize: envInteger(env, ['OTEL_BSP_MAX_EXPORT_BATCH_SIZE'], 512, 1),
        maxConcurrentExports: integer('export-concurrency'),
      },
      beat: {
        toleranceMs: integer('beat-tolerance-ms'),
        lateAfterMs: integer('beat-late-after-ms'),
        runTimeoutMs: integer('beat-run-timeout-ms'),
        maxEntries: integer('beat-max-entries'),
      },
      assembler: {
        maxInFlightTasks: integer('max-in-flight-tasks'),
        maxInFlightBytes: integer('max-in-flight-bytes'),
        finishGraceMs: integer('finish-grace-ms'),
        maxFinishedTaskIds: Math.max(10_000, integer('max-in-flight-tasks')),
        captureArgs: boolean('capture-args'),
        captureResult: boolean('capture-result'),
      },
      // The span-specific SDK variable beats OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT, not the flag.
      maxAttributeLength:
        flags['max-attribute-length'] === undefined
          ? envInteger(env, ['OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT'], maxAttributeLength, 64)
          : maxAttributeLength,
      maxCapturedLength: integer('max-captured-length'),
      maxMessageBytes: integer('max-message-bytes'),
      connectTimeoutMs: integer('connect-timeout-ms'),
      stateFile: stateFile(raw('state-file'), broker, raw('amqp-queue'), env),
      stateSnapshotIntervalMs: integer('state-snapshot-interval-ms'),
      maxTaskAgeMs: integer('max-task-age-ms'),
      outageGraceMs: integer('outage-grace-ms'),
      logLevel: logLevel as LogLevel,
      exporter: { kind: exporter, consoleQuietMs: integer('console-quiet-ms') },
      enableEvents: {
        enabled: boolean('enable-events'),
        intervalMs: integer('enable-events-interval-ms'),
        controlExchange: nonEmpty('control-exchange', raw('control-exchange')),
      },
    },
  };
}

/**
 * `--exporter`, else CELERY_OTEL_BRIDGE_EXPORTER, else OTEL_TRACES_EXPORTER (the SDK variable,
 * honoured for `otlp` and `console`), else `otlp`.
 * https://opentelemetry.io/docs/specs/otel/configuration/sdk-environment-variables/#exporter-selection
 */
function traceExporter(flag: string | boolean | undefined, env: Env): TraceExporterKind {
  const own = env['CELERY_OTEL_BRIDGE_EXPORTER']?.trim();
  const sdk = env['OTEL_TRACES_EXPORTER']?.trim();
  const [value, source] =
    typeof flag === 'string'
      ? [flag.trim(), '--exporter']
      : own !== undefined && own !== ''
        ? [own, 'CELERY_OTEL_BRIDGE_EXPORTER']
        : sdk !== undefined && sdk !== ''
          ? [sdk, 'OTEL_TRACES_EXPORTER']
          : ['otlp', '--exporter'];
  if (value === 'otlp' || value === 'console') return value;
  throw new ConfigError(
    `${source} must be otlp or console, not ${JSON.stringify(value)}` +
      (source === 'OTEL_TRACES_EXPORTER'
        ? ' (the bridge exists to export traces: other values are not supported)'
        : ''),
  );
}

function parseFlags(argv: readonly string[]): Record<string, string | boolean | undefined> {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
    'help-all': { type: 'boolean' },
    version: { type: 'boolean', short: 'v' },
  };
  for (const spec of OPTION_SPECS) {
    options[spec.flag] = { type: spec.kind === 'boolean' ? 'boolean' : 'string' };
  }
  try {
    const { values } = parseArgs({
      args: [...argv],
      options,
      strict: true,
      allowPositionals: false,
    });
    return values;
  } catch (error) {
    throw new ConfigError(`${(error as Error).message}; run with --help for the list of options`, {
      cause: error,
    });
  }
}

/** `text` as an integer of at least `min`; `label` names the flag or variable it came from. */
function wholeNumber(text: string, min: number, label: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(
      `${label} must be a whole number of at least ${min}, not ${JSON.stringify(text)}`,
    );
  }
  return value;
}

function parseBoolean(flag: string, text: string): boolean {
  const lowered = text.toLowerCase();
  if (['true', '1', 'yes', 'on'].includes(lowered)) return true;
  if (['false', '0', 'no', 'off'].includes(lowered)) return false;
  throw new ConfigError(`${optionLabel(flag)} must be true or false, not ${JSON.stringify(text)}`);
}

function nonEmpty(flag: string, value: string): string {
  if (value === '') throw new ConfigError(`--${flag} must not be empty`);
  return value;
}

function envInteger(env: Env, names: string[], fallback: number, min = 0): number {
  for (const name of names) {
    const text = env[name]?.trim();
    if (text !== undefined && text !== '') return wholeNumber(text, min, name);
  }
  return fallback;
}

/** The OTLP exporter settings of one signal, from its own and the generic variables. */
function otlpSignal(
  signal: 'TRACES' | 'METRICS',
  flags: Record<string, string | boolean | undefined>,
  env: Env,
): OtlpSignalOptions {
  const generic = (name: string): string | undefined => env[`OTEL_EXPORTER_OTLP_${name}`]?.trim();
  const specific = (name: string): string | undefined =>
    env[`OTEL_EXPORTER_OTLP_${signal}_${name}`]?.trim();
  return {
    url: signalUrl(signal, flags['otlp-endpoint'], env),
    protocol: protocol(flags['otlp-protocol'], specific('PROTOCOL') || generic('PROTOCOL')),
    headers: {
      ...httpHeaders('OTEL_EXPORTER_OTLP_HEADERS', generic('HEADERS')),
      ...httpHeaders(`OTEL_EXPORTER_OTLP_${signal}_HEADERS`, specific('HEADERS')),
    },
    compression: compression(specific('COMPRESSION') || generic('COMPRESSION')),
    timeoutMs: envInteger(
      env,
      [`OTEL_EXPORTER_OTLP_${signal}_TIMEOUT`, 'OTEL_EXPORTER_OTLP_TIMEOUT'],
      10_000,
      // The SDK's exporters refuse a timeout of 0 (otlp-exporter-base `validateTimeoutMillis`):
      // refused here, with the variable's name, instead of failing later at every export.
      1,
    ),
  };
}

/**
 * OTLP/HTTP endpoint rules: the signal-specific variable is used as is; the generic one (and the
 * flag) is a base URL to which `v1/traces` or `v1/metrics` is appended.
 * https://opentelemetry.io/docs/specs/otel/protocol/exporter/#endpoint-urls-for-otlphttp
 */
function signalUrl(
  signal: 'TRACES' | 'METRICS',
  flag: string | boolean | undefined,
  env: Env,
): string {
  const variable = `OTEL_EXPORTER_OTLP_${signal}_ENDPOINT`;
  const specific = env[variable]?.trim();
  if (typeof flag !== 'string' && specific !== undefined && specific !== '') {
    return checkHttpUrl(specific, variable);
  }
  const base =
    typeof flag === 'string'
      ? flag
      : env['OTEL_EXPORTER_OTLP_ENDPOINT']?.trim() || 'http://localhost:4318';
  const source = typeof flag === 'string' ? '--otlp-endpoint' : 'OTEL_EXPORTER_OTLP_ENDPOINT';
  checkHttpUrl(base, source);
  return `${base.endsWith('/') ? base : `${base}/`}v1/${signal.toLowerCase()}`;
}

function checkHttpUrl(text: string, source: string): string {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new ConfigError(
      `${source} ${JSON.stringify(redactUrl(text))} is not a URL: use e.g. http://localhost:4318`,
    );
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') {
    throw new ConfigError(
      `${source} must be an http:// or https:// URL (OTLP/HTTP), not ${url.protocol}//…`,
    );
  }
  return text;
}

function protocol(flag: string | boolean | undefined, fromEnv: string | undefined): OtlpProtocol {
  const value = (typeof flag === 'string' ? flag : undefined) ?? (fromEnv || 'http/protobuf');
  if (value === 'http/protobuf' || value === 'http/json') return value;
  if (value === 'grpc') {
    throw new ConfigError(
      "OTLP over gRPC is not supported: set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf and point the endpoint at the collector's HTTP port (4318)",
    );
  }
  throw new ConfigError(
    `the OTLP protocol must be http/protobuf or http/json, not ${JSON.stringify(value)}`,
  );
}

function compression(value: string | undefined): 'gzip' | 'none' {
  const chosen = value || 'none';
  if (chosen === 'gzip' || chosen === 'none') return chosen;
  throw new ConfigError(
    `OTEL_EXPORTER_OTLP_COMPRESSION must be gzip or none, not ${JSON.stringify(chosen)}`,
  );
}

/** OTEL_METRICS_EXPORTER: `otlp` (default) pushes; `none` (or `prometheus` alone) does not. */
function metricsExporterEnabled(env: Env): boolean {
  const value = env['OTEL_METRICS_EXPORTER']?.trim();
  if (value === undefined || value === '') return true;
  const names = value.split(',').map((name) => name.trim());
  for (const name of names) {
    if (!['otlp', 'prometheus', 'none'].includes(name)) {
      throw new ConfigError(
        `OTEL_METRICS_EXPORTER must list otlp, prometheus or none, not ${JSON.stringify(name)}`,
      );
    }
  }
  return names.includes('otlp');
}

function workerAttribute(mode: string, strip: string): WorkerAttributeOptions {
  if (mode !== 'hostname' && mode !== 'off') {
    throw new ConfigError(`--metrics-worker must be hostname or off, not ${JSON.stringify(mode)}`);
  }
  if (strip === '') return { mode };
  try {
    return { mode, strip: new RegExp(strip, 'g') };
  } catch (error) {
    throw new ConfigError(
      `--metrics-worker-strip is not a valid regular expression: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

/** An RFC 9110 token: what a header name may be. */
const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9a-z-]+$/i;

/**
 * OTLP headers, checked here rather than by Node's HTTP client at the first export, whose error
 * quotes the offending header name (which, mistyped, may hold the token: `Bearer abc=…`). Names
 * must be RFC 9110 tokens; values must not hold CR, LF or NUL.
 */
function httpHeaders(name: string, text: string | undefined): Record<string, string> {
  const headers = parseKeyValueList(name, text, true);
  for (const [key, value] of Object.entries(headers)) {
    if (!HTTP_TOKEN.test(key)) {
      throw new ConfigError(
        `${name}: an entry has a name that is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_\`|~ only)`,
      );
    }
    if (/[\r\n\0]/.test(value)) {
      throw new ConfigError(`${name}: the value of an entry holds a line break or NUL`);
    }
  }
  return headers;
}

/**
 * `key1=value1,key2=value2` with percent-encoded values, as OTEL_EXPORTER_OTLP_HEADERS and
 * OTEL_RESOURCE_ATTRIBUTES use. Error messages name the key, never a value: headers hold secrets.
 * https://opentelemetry.io/docs/specs/otel/protocol/exporter/#specifying-headers-via-environment-variables
 */
function parseKeyValueList(
  name: string,
  text: string | undefined,
  /** Headers: a key that is not a header name is not echoed (a mistyped one may hold the secret). */
  headerKeys = false,
): Record<string, string> {
  const out: Record<string, string> = {};
  if (text === undefined || text.trim() === '') return out;
  for (const [index, item] of text.split(',').entries()) {
    if (item.trim() === '') continue;
    const equals = item.indexOf('=');
    const key = equals === -1 ? item.trim() : item.slice(0, equals).trim();
    if (equals === -1 || key === '') {
      throw new ConfigError(
        `${name} must look like key1=value1,key2=value2; an entry has no "key="`,
      );
    }
    try {
      out[key] = decodeURIComponent(item.slice(equals + 1).trim());
    } catch {
      throw new ConfigError(
        `${name}: the value of ${headerKeys && !HTTP_TOKEN.test(key) ? `entry ${index + 1}` : JSON.stringify(key)} is not validly percent-encoded`,
      );
    }
  }
  return out;
}

/**
 * `auto`: one file per broker (host, port, vhost or db) and bridge queue in the bridge's state
 * directory (defaultStateDirectory), so two bridges on one machine never share one; `none`: no
 * state kept.
 */
function stateFile(
  value: string,
  broker: BrokerEndpoint,
  queue: string,
  env: Env,
): string | undefined {
  if (value === 'none') return undefined;
  if (value !== 'auto') return value;
  const key = `${broker.kind}://${broker.hostname}:${broker.port}/${broker.vhost}/${broker.db}/${queue}`;
  const digest = createHash('sha256').update(key).digest('hex').slice(0, 16);
  const directory = defaultStateDirectory({ env, uid: process.getuid?.(), home: homedir() });
  return join(directory, `state-${digest}.json`);
}

function fanoutPrefix(value: string, db: number): string {
  // kombu/transport/redis.py: keyprefix_fanout = '/{db}.' unless fanout_prefix is False or a str.
  if (value === 'true') return `/${db}.`;
  if (value === 'false') return '';
  return value.replace('{db}', String(db));
}
