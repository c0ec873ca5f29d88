import { OPTION_GROUPS, OPTION_SPECS, type OptionSpec } from './optionSpecs.js';

/** `common`: what `--help` prints; `all`: what `--help-all` prints. */
export type HelpScope = 'common' | 'all';

/** Help lines are wrapped at this width, so they read in a 100-column terminal. */
const WIDTH = 100;

/**
 * The text of `--help` and `--help-all`, generated from OPTION_SPECS so it cannot drift from what
 * is parsed. Both sort the options by group (OPTION_GROUPS' order), essential options first. The
 * short help describes only the essential ones and names the rest of each group, so a first-time
 * user sees the handful of options that matter without scrolling past fifty others, and still
 * learns every flag's name.
 */
export function helpText(version: string, scope: HelpScope = 'common'): string {
  const lines = [
    `celery-otel-bridge ${version}: Celery events -> OpenTelemetry traces over OTLP/HTTP`,
    '',
    'Usage: celery-otel-bridge [options]',
    '',
    'Every option can also be set by the environment variable shown; a flag wins.',
    scope === 'common'
      ? 'The options most deployments set are described; --help-all describes every option.'
      : 'Every option, by topic; docs/configuration.md has the same list with more detail.',
  ];
  for (const group of OPTION_GROUPS) {
    const specs = OPTION_SPECS.filter((spec) => spec.group === group.id);
    if (specs.length === 0) continue;
    const ordered = [
      ...specs.filter((spec) => spec.essential === true),
      ...specs.filter((spec) => spec.essential !== true),
    ];
    const described = scope === 'all' ? ordered : ordered.filter((spec) => spec.essential);
    const named = ordered.filter((spec) => !described.includes(spec));
    lines.push('', `${group.title}:`);
    for (const spec of described) lines.push(...describe(spec));
    if (named.length > 0) {
      lines.push(
        ...wrap(
          'more: ',
          named.map((spec) => `--${spec.flag}`),
        ),
      );
    }
  }
  lines.push(
    '',
    'Commands:',
    '  -h, --help      show this help (the options most deployments set)',
    '      --help-all  describe every option',
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

function describe(spec: OptionSpec): string[] {
  const value = spec.kind === 'boolean' ? '' : ' <value>';
  const fallback =
    spec.default === undefined || spec.default === '' ? '' : `, default ${spec.default}`;
  return [
    `  --${spec.flag}${value}`,
    ...wrapWords('      ', spec.help),
    ...wrapWords('      ', `env ${spec.env}${fallback}`),
  ];
}

/** `text` broken at spaces into indented lines of at most WIDTH (a longer word stays whole). */
function wrapWords(indent: string, text: string): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line !== '' && indent.length + line.length + 1 + word.length > WIDTH) {
      lines.push(indent + line);
      line = word;
    } else {
      line = line === '' ? word : `${line} ${word}`;
    }
  }
  lines.push(indent + line);
  return lines;
}

/** `items` after `  label`, comma-separated, wrapped at WIDTH and aligned under the first. */
function wrap(label: string, items: readonly string[]): string[] {
  const indent = ' '.repeat(2 + label.length);
  const lines: string[] = [];
  let line = `  ${label}`;
  for (const [index, item] of items.entries()) {
    // Room for ", item" and the comma that ends the line when another item follows.
    if (index > 0 && line.length + 2 + item.length + 1 > WIDTH) {
      lines.push(`${line},`);
      line = indent + item;
    } else {
      line += index === 0 ? item : `, ${item}`;
    }
  }
  lines.push(line);
  return lines;
}
