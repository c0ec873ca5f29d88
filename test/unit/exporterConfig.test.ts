import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/shared/errors.js';
import { runOptions as run } from '../support/configHelpers.js';

// `--exporter` / `--console-quiet-ms` and `--enable-events*`: flags, variables, defaults.

describe('--exporter', () => {
  it('defaults to otlp with the standard 5 s batch delay', () => {
    const options = run([]);
    expect(options.exporter).toEqual({ kind: 'otlp', consoleQuietMs: 2000 });
    expect(options.exportQueue.scheduleDelayMs).toBe(5000);
  });

  it('takes the flag over CELERY_OTEL_BRIDGE_EXPORTER over OTEL_TRACES_EXPORTER', () => {
    expect(run([], { OTEL_TRACES_EXPORTER: 'console' }).exporter.kind).toBe('console');
    expect(
      run([], { OTEL_TRACES_EXPORTER: 'console', CELERY_OTEL_BRIDGE_EXPORTER: 'otlp' }).exporter
        .kind,
    ).toBe('otlp');
    expect(
      run(['--exporter', 'console'], { CELERY_OTEL_BRIDGE_EXPORTER: 'otlp' }).exporter.kind,
    ).toBe('console');
  });

  it('prints batches at once in console mode unless OTEL_BSP_SCHEDULE_DELAY says otherwise', () => {
    expect(run(['--exporter', 'console']).exportQueue.scheduleDelayMs).toBe(100);
    expect(
      run(['--exporter', 'console'], { OTEL_BSP_SCHEDULE_DELAY: '700' }).exportQueue
        .scheduleDelayMs,
    ).toBe(700);
    expect(
      run(['--exporter', 'console', '--console-quiet-ms', '5000']).exporter.consoleQuietMs,
    ).toBe(5000);
  });

  it.each([
    [['--exporter', 'zipkin'], {}, '--exporter must be otlp or console, not "zipkin"'],
    [[], { CELERY_OTEL_BRIDGE_EXPORTER: 'jaeger' }, 'CELERY_OTEL_BRIDGE_EXPORTER must be otlp'],
    [[], { OTEL_TRACES_EXPORTER: 'none' }, 'OTEL_TRACES_EXPORTER must be otlp or console'],
  ])('refuses %j %j', (argv, env, message) => {
    expect(() => run(argv, env)).toThrow(ConfigError);
    expect(() => run(argv, env)).toThrow(message);
  });
});

describe('--enable-events', () => {
  it('is off by default, every 60 s on the `celery` control exchange when on', () => {
    expect(run([]).enableEvents).toEqual({
      enabled: false,
      intervalMs: 60_000,
      controlExchange: 'celery',
    });
    expect(run(['--enable-events']).enableEvents.enabled).toBe(true);
    expect(
      run([], {
        CELERY_OTEL_BRIDGE_ENABLE_EVENTS: 'true',
        CELERY_OTEL_BRIDGE_ENABLE_EVENTS_INTERVAL_MS: '5000',
        CELERY_CONTROL_EXCHANGE: 'myapp',
      }).enableEvents,
    ).toEqual({ enabled: true, intervalMs: 5000, controlExchange: 'myapp' });
  });

  it('refuses an interval under 100 ms', () => {
    expect(() => run(['--enable-events-interval-ms', '10'])).toThrow('--enable-events-interval-ms');
  });
});
