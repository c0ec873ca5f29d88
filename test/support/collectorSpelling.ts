/**
 * Metric names as an OpenTelemetry Collector's Prometheus exporter (and remote write) writes the
 * bridge's OTLP metrics, with `add_metric_suffixes` (its default): the unit appended (`s` ->
 * `_seconds`, `By` -> `_bytes`, `1` on a gauge -> `_ratio`, `{...}` annotations dropped), before
 * `_total` on counters. The bridge's own text exposition carries each family's unit in its
 * `# UNIT` line, so the renaming reads it from there. This stands in for a Collector, which cannot
 * run here (no Docker, no Collector package): the rules it follows are the OpenTelemetry spec's
 * https://opentelemetry.io/docs/specs/otel/compatibility/prometheus_and_openmetrics/#metric-metadata-1
 * and the Collector's translator (github.com/prometheus/otlptranslator `MetricNamer.Build`).
 */
export function collectorSpelling(text: string): string {
  const units = new Map<string, string>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    const unit = /^# UNIT (\S+) (\S+)$/.exec(line);
    if (unit) units.set(unit[1]!, unit[2]!);
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
  }
  const renamed = new Map<string, string>();
  for (const [family, type] of types) {
    const unit = units.get(family) ?? '';
    const suffix =
      unit === 's'
        ? '_seconds'
        : unit === 'By'
          ? '_bytes'
          : unit === '1' && type === 'gauge'
            ? '_ratio'
            : '';
    if (suffix === '') continue;
    renamed.set(
      family,
      type === 'counter' ? `${family.replace(/_total$/, '')}${suffix}_total` : `${family}${suffix}`,
    );
  }
  return text
    .split('\n')
    .map((line) => {
      const name = /^(?:# (?:HELP|TYPE|UNIT) )?([a-zA-Z_:][a-zA-Z0-9_:]*)/.exec(line)?.[1];
      if (name === undefined) return line;
      for (const [family, to] of renamed) {
        for (const part of ['', '_bucket', '_sum', '_count']) {
          if (name === `${family}${part}`) return line.replace(name, `${to}${part}`);
        }
      }
      return line;
    })
    .join('\n');
}
