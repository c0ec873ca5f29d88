import { OPTION_SPECS } from './optionSpecs.js';

export function helpText(version: string): string {
  const lines = [
    `celery-otel-bridge ${version}: Celery events -> OpenTelemetry traces over OTLP/HTTP`,
    '',
    'Usage: celery-otel-bridge [options]',
    '',
    'Every option can also be set by the environment variable shown; a flag wins.',
    '',
  ];
  for (const spec of OPTION_SPECS) {
    const value = spec.kind === 'boolean' ? '' : ' <value>';
    lines.push(`  --${spec.flag}${value}`);
    lines.push(`      ${spec.help}`);
    lines.push(
      `      env ${spec.env}${spec.default === undefined || spec.default === '' ? '' : `, default ${spec.default}`}`,
    );
  }
  lines.push(
    '  -h, --help      show this help',
    '  -v, --version   print the version',
    '',
    'Also honoured, with their standard meaning: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,',
    'OTEL_EXPORTER_OTLP_[TRACES_]HEADERS, OTEL_EXPORTER_OTLP_[TRACES_]COMPRESSION (gzip),',
    'OTEL_EXPORTER_OTLP_[TRACES_]TIMEOUT, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL, OTEL_RESOURCE_ATTRIBUTES,',
    'OTEL_BSP_SCHEDULE_DELAY, OTEL_BSP_EXPORT_TIMEOUT, OTEL_BSP_MAX_QUEUE_SIZE,',
    'OTEL_BSP_MAX_EXPORT_BATCH_SIZE, OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT,',
    'OTEL_TRACES_EXPORTER (otlp or console; --exporter and CELERY_OTEL_BRIDGE_EXPORTER win).',
    '',
    'Exit codes: 0 stopped by a signal, 1 broker unreachable or a fatal error, 2 invalid configuration.',
  );
  return `${lines.join('\n')}\n`;
}
