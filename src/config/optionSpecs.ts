/**
 * Every command-line flag of the bridge, with its environment variable and default: the single
 * table that parsing, `--help` and the README's configuration reference come from.
 */
export interface OptionSpec {
  readonly flag: string;
  /** The environment variable read when the flag is absent. */
  readonly env: string;
  readonly kind: 'string' | 'integer' | 'boolean';
  readonly default?: string;
  readonly help: string;
  /** Smallest accepted integer. */
  readonly min?: number;
}

export const OPTION_SPECS: readonly OptionSpec[] = [
  {
    flag: 'broker',
    env: 'CELERY_BROKER_URL',
    kind: 'string',
    default: 'amqp://guest:guest@localhost:5672//',
    help: "Celery broker URL: amqp://, amqps://, redis://, rediss:// (Celery's default if unset)",
  },
  {
    flag: 'broker-tls-ca-file',
    env: 'CELERY_OTEL_BRIDGE_BROKER_TLS_CA_FILE',
    kind: 'string',
    default: '',
    help: "amqps:// / rediss://: PEM file of the CA(s) that signed the broker's certificate (instead of the system CAs)",
  },
  {
    flag: 'broker-tls-cert-file',
    env: 'CELERY_OTEL_BRIDGE_BROKER_TLS_CERT_FILE',
    kind: 'string',
    default: '',
    help: 'amqps:// / rediss://: PEM client certificate, for brokers that require one (with --broker-tls-key-file)',
  },
  {
    flag: 'broker-tls-key-file',
    env: 'CELERY_OTEL_BRIDGE_BROKER_TLS_KEY_FILE',
    kind: 'string',
    default: '',
    help: 'amqps:// / rediss://: PEM private key (unencrypted) of --broker-tls-cert-file',
  },
  {
    flag: 'broker-tls-servername',
    env: 'CELERY_OTEL_BRIDGE_BROKER_TLS_SERVERNAME',
    kind: 'string',
    default: '',
    help: "amqps:// / rediss://: host name sent as SNI and checked against the broker's certificate (default: the URL's host)",
  },
  {
    flag: 'broker-tls-insecure',
    env: 'CELERY_OTEL_BRIDGE_BROKER_TLS_INSECURE',
    kind: 'boolean',
    default: 'false',
    help: "amqps:// / rediss://: do not verify the broker's certificate (testing only; logs a warning)",
  },
  {
    flag: 'exporter',
    env: 'CELERY_OTEL_BRIDGE_EXPORTER',
    kind: 'string',
    default: 'otlp',
    help: 'otlp (spans to --otlp-endpoint) or console (finished traces as trees on stdout)',
  },
  {
    flag: 'console-quiet-ms',
    env: 'CELERY_OTEL_BRIDGE_CONSOLE_QUIET_MS',
    kind: 'integer',
    default: '2000',
    min: 0,
    help: 'console: a trace is printed once its root task is in and no span came for this long',
  },
  {
    flag: 'otlp-endpoint',
    env: 'OTEL_EXPORTER_OTLP_ENDPOINT',
    kind: 'string',
    default: 'http://localhost:4318',
    help: 'OTLP/HTTP base URL; traces go to <endpoint>/v1/traces (OTEL_EXPORTER_OTLP_TRACES_ENDPOINT wins)',
  },
  {
    flag: 'otlp-protocol',
    env: 'OTEL_EXPORTER_OTLP_PROTOCOL',
    kind: 'string',
    default: 'http/protobuf',
    help: 'http/protobuf or http/json (OTEL_EXPORTER_OTLP_TRACES_PROTOCOL wins)',
  },
  {
    flag: 'export-concurrency',
    env: 'CELERY_OTEL_BRIDGE_EXPORT_CONCURRENCY',
    kind: 'integer',
    default: '4',
    min: 1,
    help: 'OTLP span export requests in flight at once (one at a time while the collector fails)',
  },
  {
    flag: 'service-name',
    env: 'OTEL_SERVICE_NAME',
    kind: 'string',
    default: 'celery',
    help: 'service.name of the exported spans',
  },
  {
    flag: 'events-exchange',
    env: 'CELERY_EVENT_EXCHANGE',
    kind: 'string',
    default: 'celeryev',
    help: "Celery's event_exchange setting",
  },
  {
    flag: 'enable-events',
    env: 'CELERY_OTEL_BRIDGE_ENABLE_EVENTS',
    kind: 'boolean',
    default: 'false',
    help: "periodically broadcast Celery's enable_events control command, so workers started without -E send task events",
  },
  {
    flag: 'enable-events-interval-ms',
    env: 'CELERY_OTEL_BRIDGE_ENABLE_EVENTS_INTERVAL_MS',
    kind: 'integer',
    default: '60000',
    min: 100,
    help: 'with --enable-events: how often the command is broadcast (workers that start later get it too)',
  },
  {
    flag: 'control-exchange',
    env: 'CELERY_CONTROL_EXCHANGE',
    kind: 'string',
    default: 'celery',
    help: "Celery's control_exchange setting: --enable-events broadcasts on <name>.pidbox",
  },
  {
    flag: 'amqp-queue',
    env: 'CELERY_OTEL_BRIDGE_AMQP_QUEUE',
    kind: 'string',
    default: 'celery-otel-bridge',
    help: "RabbitMQ: name of the bridge's own event queue (kept across bridge restarts)",
  },
  {
    flag: 'amqp-queue-max-bytes',
    env: 'CELERY_OTEL_BRIDGE_AMQP_QUEUE_MAX_BYTES',
    kind: 'integer',
    default: String(128 * 1024 * 1024),
    min: 1024,
    help: 'RabbitMQ: the queue holds at most this many bytes of events; the oldest go first',
  },
  {
    flag: 'amqp-queue-ttl-ms',
    env: 'CELERY_OTEL_BRIDGE_AMQP_QUEUE_TTL_MS',
    kind: 'integer',
    default: String(30 * 60_000),
    min: 1000,
    help: 'RabbitMQ: events older than this are dropped from the queue',
  },
  {
    flag: 'amqp-queue-expires-ms',
    env: 'CELERY_OTEL_BRIDGE_AMQP_QUEUE_EXPIRES_MS',
    kind: 'integer',
    default: String(60 * 60_000),
    min: 1000,
    help: 'RabbitMQ: the queue is deleted after this long without a bridge consuming',
  },
  {
    flag: 'amqp-prefetch',
    env: 'CELERY_OTEL_BRIDGE_AMQP_PREFETCH',
    kind: 'integer',
    default: '500',
    min: 1,
    help: 'RabbitMQ: unacknowledged messages in flight to the bridge',
  },
  {
    flag: 'redis-global-keyprefix',
    env: 'CELERY_OTEL_BRIDGE_REDIS_GLOBAL_KEYPREFIX',
    kind: 'string',
    default: '',
    help: "Redis: kombu's global_keyprefix transport option, if Celery sets one",
  },
  {
    flag: 'redis-fanout-prefix',
    env: 'CELERY_OTEL_BRIDGE_REDIS_FANOUT_PREFIX',
    kind: 'string',
    default: 'true',
    help: "Redis: kombu's fanout_prefix transport option: true (/{db}.), false, or a string",
  },
  {
    flag: 'redis-max-buffered-bytes',
    env: 'CELERY_OTEL_BRIDGE_REDIS_MAX_BUFFERED_BYTES',
    kind: 'integer',
    default: String(256 * 1024 * 1024),
    min: 1024 * 1024,
    help: 'Redis: messages read but not yet processed, kept at most (bursts); more are dropped and counted',
  },
  {
    flag: 'capture-args',
    env: 'CELERY_OTEL_BRIDGE_CAPTURE_ARGS',
    kind: 'boolean',
    default: 'false',
    help: 'export task args and kwargs (user data: off by default)',
  },
  {
    flag: 'capture-result',
    env: 'CELERY_OTEL_BRIDGE_CAPTURE_RESULT',
    kind: 'boolean',
    default: 'false',
    help: 'export task results (user data: off by default)',
  },
  {
    flag: 'max-captured-length',
    env: 'CELERY_OTEL_BRIDGE_MAX_CAPTURED_LENGTH',
    kind: 'integer',
    default: '1024',
    min: 16,
    help: 'captured args, kwargs and results are cut to this many characters',
  },
  {
    flag: 'max-attribute-length',
    env: 'OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT',
    kind: 'integer',
    default: '32768',
    min: 64,
    help: 'any string attribute (tracebacks too) is cut to this many characters, head and tail kept',
  },
  {
    flag: 'max-in-flight-tasks',
    env: 'CELERY_OTEL_BRIDGE_MAX_IN_FLIGHT_TASKS',
    kind: 'integer',
    default: '100000',
    min: 1,
    help: 'unfinished tasks tracked at most; the oldest is exported as incomplete beyond',
  },
  {
    flag: 'max-in-flight-bytes',
    env: 'CELERY_OTEL_BRIDGE_MAX_IN_FLIGHT_BYTES',
    kind: 'integer',
    default: String(128 * 1024 * 1024),
    min: 1024 * 1024,
    help: 'estimated memory of the unfinished tasks at most; the oldest is exported as incomplete beyond',
  },
  {
    flag: 'max-task-age-ms',
    env: 'CELERY_OTEL_BRIDGE_MAX_TASK_AGE_MS',
    kind: 'integer',
    default: String(24 * 60 * 60_000),
    min: 1000,
    help: 'an unfinished task with no event for this long is exported as expired (ETA tasks may wait hours)',
  },
  {
    flag: 'outage-grace-ms',
    env: 'CELERY_OTEL_BRIDGE_OUTAGE_GRACE_MS',
    kind: 'integer',
    default: '300000',
    min: 0,
    help: 'after a broker outage, tasks in flight with no new event for this long are exported as incomplete',
  },
  {
    flag: 'finish-grace-ms',
    env: 'CELERY_OTEL_BRIDGE_FINISH_GRACE_MS',
    kind: 'integer',
    default: '2000',
    min: 0,
    help: 'how long a finished task waits for events known to be missing before export',
  },
  {
    flag: 'max-message-bytes',
    env: 'CELERY_OTEL_BRIDGE_MAX_MESSAGE_BYTES',
    kind: 'integer',
    default: String(16 * 1024 * 1024),
    min: 1024,
    help: 'larger event messages are rejected and counted',
  },
  {
    flag: 'connect-timeout-ms',
    env: 'CELERY_OTEL_BRIDGE_CONNECT_TIMEOUT_MS',
    kind: 'integer',
    default: '60000',
    min: 0,
    help: 'at start, retry an unreachable broker for this long, then exit 1',
  },
  {
    flag: 'http-host',
    env: 'CELERY_OTEL_BRIDGE_HTTP_HOST',
    kind: 'string',
    default: '0.0.0.0',
    help: 'address of the HTTP listener serving /metrics, /healthz and /readyz',
  },
  {
    flag: 'http-port',
    env: 'CELERY_OTEL_BRIDGE_HTTP_PORT',
    kind: 'integer',
    default: '9464',
    min: 0,
    help: 'port of the HTTP listener (0 turns it off)',
  },
  {
    flag: 'metrics-worker',
    env: 'CELERY_OTEL_BRIDGE_METRICS_WORKER',
    kind: 'string',
    default: 'hostname',
    help: 'worker attribute on task metrics: hostname or off',
  },
  {
    flag: 'metrics-worker-strip',
    env: 'CELERY_OTEL_BRIDGE_METRICS_WORKER_STRIP',
    kind: 'string',
    default: '',
    help: 'regular expression removed from worker hostnames in metrics, e.g. pod suffixes',
  },
  {
    flag: 'metrics-max-task-names',
    env: 'CELERY_OTEL_BRIDGE_METRICS_MAX_TASK_NAMES',
    kind: 'integer',
    default: '1000',
    min: 1,
    help: 'distinct task names in metrics at most; later ones are reported as __other__',
  },
  {
    flag: 'queues',
    env: 'CELERY_OTEL_BRIDGE_QUEUES',
    kind: 'string',
    default: '',
    help: 'comma-separated queues whose length is always reported (queues seen in events are added)',
  },
  {
    flag: 'queue-length-interval-ms',
    env: 'CELERY_OTEL_BRIDGE_QUEUE_LENGTH_INTERVAL_MS',
    kind: 'integer',
    default: '15000',
    min: 100,
    help: 'how often queue lengths are read from the broker',
  },
  {
    flag: 'worker-forget-after-ms',
    env: 'CELERY_OTEL_BRIDGE_WORKER_FORGET_AFTER_MS',
    kind: 'integer',
    default: '600000',
    min: 1000,
    help: 'a worker silent this long is forgotten and its metric series removed',
  },
  {
    flag: 'state-file',
    env: 'CELERY_OTEL_BRIDGE_STATE_FILE',
    kind: 'string',
    default: 'auto',
    help: 'where unfinished tasks are kept across restarts: a path, auto (a file per broker and queue in $STATE_DIRECTORY, else $XDG_STATE_HOME/celery-otel-bridge, else /var/lib/celery-otel-bridge for root or ~/.local/state/celery-otel-bridge; see docs/security.md) or none',
  },
  {
    flag: 'state-snapshot-interval-ms',
    env: 'CELERY_OTEL_BRIDGE_STATE_SNAPSHOT_INTERVAL_MS',
    kind: 'integer',
    default: '60000',
    min: 0,
    help: 'also save the state this often, so a kill -9 loses at most this much (0: only on stop)',
  },
  {
    flag: 'log-level',
    env: 'CELERY_OTEL_BRIDGE_LOG_LEVEL',
    kind: 'string',
    default: 'info',
    help: 'debug, info, warn or error',
  },
];

/** The spec of `--flag`; a flag without one is a programming error. */
export function specFor(flag: string): OptionSpec {
  const spec = OPTION_SPECS.find((candidate) => candidate.flag === flag);
  if (spec === undefined) throw new Error(`no option spec for --${flag}`);
  return spec;
}

/** `--flag (ENV_VAR)` for error messages, so the user knows which of the two to fix. */
export function optionLabel(flag: string): string {
  return `--${flag} (${specFor(flag).env})`;
}
