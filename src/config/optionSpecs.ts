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
    flag: 'log-level',
    env: 'CELERY_OTEL_BRIDGE_LOG_LEVEL',
    kind: 'string',
    default: 'info',
    help: 'debug, info, warn or error',
  },
];
