import { diag } from '@opentelemetry/api';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseBrokerUrl } from '../../src/config/brokerUrl.js';
import { decodeEventBody } from '../../src/decode/decodeEventBody.js';
import type { DecodeRejection } from '../../src/shared/DecodeRejection.js';
import { decodeKombuEnvelope } from '../../src/brokers/redis/decodeKombuEnvelope.js';
import { installDiagLogger } from '../../src/log/installDiagLogger.js';
import { diagLoggerOptions } from '../../src/config/diagLoggerOptions.js';
import { Logger } from '../../src/log/Logger.js';
import { redactUrl, secretRedactor } from '../../src/log/redact.js';
import {
  brokerTlsOptions,
  describeBrokerError,
  isTlsFailure,
} from '../../src/brokers/brokerTlsOptions.js';
import { type TlsMaterial, makeTlsMaterial } from '../support/tlsProxy.js';
import { configError, runOptions } from '../support/configHelpers.js';

function codeError(code: string, message: string): Error {
  return Object.assign(new Error(message), { code });
}

describe('--broker-tls-* options', () => {
  let material: TlsMaterial;
  beforeAll(async () => {
    material = await makeTlsMaterial();
  });
  afterAll(async () => {
    await material?.remove();
  });

  it('are absent by default: Node defaults for amqps://, nothing for amqp://', () => {
    const plain = runOptions([]).broker;
    expect(plain.tlsSettings).toBeUndefined();
    expect(brokerTlsOptions(plain)).toBeUndefined();
    const tls = runOptions(['--broker', 'amqps://u:p@rabbit:5671//']).broker;
    expect(brokerTlsOptions(tls)).toEqual({ servername: 'rabbit' });
    expect(brokerTlsOptions(parseBrokerUrl('rediss://10.0.0.5:6380/0'))).toEqual({});
  });

  it('read the files at startup and reach tls.connect options, from flags or environment', () => {
    const broker = runOptions(['--broker', 'rediss://redis:6380/0', '--broker-tls-insecure'], {
      CELERY_OTEL_BRIDGE_BROKER_TLS_CA_FILE: material.caFile,
      CELERY_OTEL_BRIDGE_BROKER_TLS_CERT_FILE: material.clientCertFile,
      CELERY_OTEL_BRIDGE_BROKER_TLS_KEY_FILE: material.clientKeyFile,
      CELERY_OTEL_BRIDGE_BROKER_TLS_SERVERNAME: 'redis.internal',
    }).broker;
    const options = brokerTlsOptions(broker);
    expect((options?.ca as Buffer).toString()).toContain('-----BEGIN CERTIFICATE-----');
    expect((options?.cert as Buffer).toString()).toContain('-----BEGIN CERTIFICATE-----');
    expect((options?.key as Buffer).toString()).toContain('PRIVATE KEY-----');
    expect(options?.servername).toBe('redis.internal');
    expect(options?.rejectUnauthorized).toBe(false);
  });

  it('name the flag and the variable when a file is unusable', () => {
    const tls = ['--broker', 'amqps://rabbit//'];
    expect(configError([...tls, '--broker-tls-ca-file', '/nope.pem'])).toMatch(
      /^--broker-tls-ca-file \(CELERY_OTEL_BRIDGE_BROKER_TLS_CA_FILE\): cannot read "\/nope.pem"/,
    );
    expect(configError([...tls, '--broker-tls-ca-file', material.serverKeyFile])).toMatch(
      /holds no PEM certificate/,
    );
    expect(
      configError([
        ...tls,
        '--broker-tls-cert-file',
        material.clientCertFile,
        '--broker-tls-key-file',
        material.caFile,
      ]),
    ).toMatch(/^--broker-tls-key-file .* is not an unencrypted PEM private key/);
    expect(
      configError([
        ...tls,
        '--broker-tls-cert-file',
        material.clientCertFile,
        '--broker-tls-key-file',
        material.serverKeyFile,
      ]),
    ).toMatch(/do not belong together/);
    expect(configError([...tls, '--broker-tls-key-file', material.clientKeyFile])).toMatch(
      /go together/,
    );
    expect(configError(['--broker', 'redis://:pw@redis/0', '--broker-tls-insecure'])).toBe(
      '--broker-tls-insecure (CELERY_OTEL_BRIDGE_BROKER_TLS_INSECURE) needs a TLS broker URL ' +
        '(amqps:// or rediss://), but the broker is redis://:***@redis/0: use the TLS scheme and ' +
        "the broker's TLS port (RabbitMQ: 5671)",
    );
  });
});

describe('describeBrokerError', () => {
  const tls = parseBrokerUrl('amqps://guest:pw@localhost:5671//');
  const plain = parseBrokerUrl('amqp://guest:pw@localhost:5672//');

  it('turns TLS failures into one sentence with the fix', () => {
    const untrusted = codeError(
      'SELF_SIGNED_CERT_IN_CHAIN',
      'self-signed certificate in certificate chain',
    );
    expect(describeBrokerError(untrusted, tls)).toBe(
      'TLS handshake with localhost:5671 failed: self-signed certificate in certificate chain; ' +
        "pass --broker-tls-ca-file with the CA that signed the broker's certificate",
    );
    expect(isTlsFailure(untrusted, tls)).toBe(true);
    const alert = codeError(
      'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
      '80:error:0A00045C:SSL routines:ssl3_read_bytes:tlsv13 alert certificate required:../deps/openssl/ssl/record/rec_layer_s3.c:1601:SSL alert number 116\n',
    );
    expect(describeBrokerError(alert, tls)).toBe(
      'TLS handshake with localhost:5671 failed: tlsv13 alert certificate required; the broker ' +
        'asks for a client certificate: pass --broker-tls-cert-file and --broker-tls-key-file',
    );
    expect(
      describeBrokerError(
        codeError('ERR_TLS_CERT_ALTNAME_INVALID', 'Hostname/IP does not match'),
        tls,
      ),
    ).toContain('--broker-tls-servername');
    expect(
      describeBrokerError(codeError('ERR_SSL_WRONG_VERSION_NUMBER', 'wrong version number'), tls),
    ).toContain('that port does not speak TLS');
  });

  it('leaves other errors as they are', () => {
    const refused = codeError('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:5671');
    expect(describeBrokerError(refused, tls)).toBe('connect ECONNREFUSED 127.0.0.1:5671');
    expect(isTlsFailure(refused, tls)).toBe(false);
    const untrusted = codeError('SELF_SIGNED_CERT_IN_CHAIN', 'self-signed');
    expect(describeBrokerError(untrusted, plain)).toBe('self-signed');
  });
});

describe('redaction', () => {
  it('hides URL credentials, parsable or not', () => {
    expect(redactUrl('https://user:tok3n@otlp.example.com/v1/traces')).toBe(
      'https://user:***@otlp.example.com/v1/traces',
    );
    expect(redactUrl('https://tok3n@otlp.example.com/')).toBe('https://***@otlp.example.com/');
    expect(redactUrl('http://localhost:4318/v1/traces')).toBe('http://localhost:4318/v1/traces');
    expect(redactUrl('http://u:p@ss@host:port')).toBe('http://***@host:port');
  });

  it('hides a password with an unencoded "/", "?" or "#", and drops query strings', () => {
    expect(redactUrl('amqp://user:12345/6789@rabbit:5672//')).toBe('amqp://***@rabbit:5672//');
    expect(redactUrl('redis://:pa?ss#word@redis:6379/0')).toBe('redis://***@redis:6379/0');
    expect(redactUrl('https://collector:4318/v1/traces?api_key=tok3n#frag')).toBe(
      'https://collector:4318/v1/traces',
    );
    expect(redactUrl('not a url?api_key=tok3n')).toBe('not a url');
    // One function for broker and OTLP URLs: a lone user name is hidden in both.
    expect(redactUrl('amqp://guest@rabbit//')).toBe('amqp://***@rabbit//');
    expect(parseBrokerUrl('amqp://guest@rabbit//').redactedUrl).toBe('amqp://***@rabbit//');
    expect(parseBrokerUrl('redis://:s3cret@redis/0?ssl_cert_reqs=none').redactedUrl).toBe(
      'redis://:***@redis/0',
    );
  });

  it('refuses a broker URL whose password holds "/", "?" or "#", without repeating it', () => {
    for (const url of [
      'amqp://guest:12345/6789@rabbit:5672//',
      'redis://:6379/hunter2@redis:6379/0',
      'amqp://guest:hunter?2@rabbit//',
    ]) {
      const message = configError([], { CELERY_BROKER_URL: url });
      expect(message).toContain('percent-encode');
      expect(message).not.toMatch(/6789|hunter/);
    }
  });

  it('checks OTLP header names at start and never echoes a malformed one', () => {
    const message = configError([], {
      OTEL_EXPORTER_OTLP_HEADERS: 'Authorization: Bearer tok3n-s3cret=x',
    });
    expect(message).toContain('not a valid HTTP header name');
    expect(message).not.toContain('tok3n');
    expect(
      configError([], { OTEL_EXPORTER_OTLP_TRACES_HEADERS: 'Bearer tok3n-s3cret=%E0%A4%A' }),
    ).not.toContain('tok3n');
    expect(configError([], { OTEL_EXPORTER_OTLP_HEADERS: 'x-token=a%0D%0Ab' })).toContain(
      'line break',
    );
    expect(runOptions([], { OTEL_EXPORTER_OTLP_HEADERS: 'x-api-key=k' }).otlp.headers).toEqual({
      'x-api-key': 'k',
    });
  });

  it('hides every occurrence of each secret, plain and percent-encoded', () => {
    const redact = secretRedactor(['s3cret/value', undefined, 'ab']);
    expect(redact('a s3cret/value and s3cret%2Fvalue; ab stays')).toBe('a *** and ***; ab stays');
  });
});

describe('installDiagLogger', () => {
  afterEach(() => diag.disable());

  it('sends OpenTelemetry diagnostics to the log, redacted, once per minute each', () => {
    const lines: string[] = [];
    const options = runOptions(['--broker', 'redis://:brokerpw@redis/0'], {
      OTEL_EXPORTER_OTLP_HEADERS: 'authorization=Bearer%20hdr-secret',
      OTEL_EXPORTER_OTLP_ENDPOINT: 'https://user:urlpw@collector:4318',
    });
    installDiagLogger(new Logger('info', (line) => lines.push(line)), diagLoggerOptions(options));
    diag.error(
      JSON.stringify({
        message: 'metrics export failed (Bearer hdr-secret, hdr-secret, brokerpw)',
        stack: 'Error: at somewhere',
      }),
    );
    diag.warn('posting to', 'https://user:urlpw@collector:4318/v1/metrics', new Error('nope'));
    diag.warn('posting to', 'https://user:urlpw@collector:4318/v1/metrics', new Error('nope'));
    diag.info('not at info level');
    diag.debug('items to be sent', { span: 'payload' });
    expect(lines).toHaveLength(2);
    const [first, second] = lines.map((line) => JSON.parse(line) as Record<string, unknown>);
    expect(first).toMatchObject({
      level: 'error',
      msg: 'metrics export failed (***, ***, ***)',
      source: 'opentelemetry',
    });
    expect(second).toMatchObject({
      level: 'warn',
      msg: 'posting to https://user:***@collector:4318/v1/metrics Error: nope',
    });
    expect(lines.join('\n')).not.toMatch(/hdr-secret|brokerpw|urlpw|payload|stack/);
  });

  it('redacts a huge partial-success message in linear time and logs it cut', () => {
    const lines: string[] = [];
    const options = runOptions([], {
      OTEL_EXPORTER_OTLP_ENDPOINT: 'https://collector:4318?api_key=querys3cret',
    });
    installDiagLogger(new Logger('info', (line) => lines.push(line)), diagLoggerOptions(options));
    // What made the old URL regex quadratic: a long run of word boundaries without `://`
    // (about 18 s for 300 KB). The test's own timeout is the bound here.
    diag.warn(`partial success: ${'a.'.repeat(150_000)} querys3cret`);
    diag.warn(`see https://collector:4318/v1/traces?api_key=querys3cret ${'x'.repeat(300_000)}`);
    expect(lines).toHaveLength(2);
    for (const line of lines) expect(line.length).toBeLessThan(5000);
    expect(lines.join('\n')).not.toContain('querys3cret');
    expect(lines[1]).toContain('https://collector:4318/v1/traces ');
  });
});

describe('Logger', () => {
  it('bounds every field and escapes what a terminal would act on', () => {
    const lines: string[] = [];
    const logger = new Logger('info', (line) => lines.push(line));
    logger.warn('event rejected', {
      detail: `a message on routing key ${'k'.repeat(10_000_000)} is not valid JSON`,
    });
    logger.warn('forged \u009b2J \u202e \x1b]52;c;AAAA\x07 \x7f');
    expect(lines[0]?.length).toBeLessThan(2 * 2100);
    const detail = (JSON.parse(lines[0] ?? '{}') as { detail: string }).detail;
    expect(detail).toMatch(/… \(\d+ more characters\)$/);
    // eslint-disable-next-line no-control-regex
    expect(lines[1]?.trimEnd()).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u202e]/);
    expect((JSON.parse(lines[1] ?? '{}') as { msg: string }).msg).toBe(
      'forged \u009b2J \u202e \x1b]52;c;AAAA\x07 \x7f',
    );
  });
});

describe('rejection details', () => {
  it("never quote an event body, as V8's JSON.parse messages do", () => {
    const rejections: DecodeRejection[] = [];
    decodeEventBody(
      {
        routingKey: 'task.multi',
        contentType: 'application/json',
        body: Buffer.from('{"type": "task-received", "kwargs": "card=4111111111111111" oops'),
      },
      { maxMessageBytes: 1 << 20 },
      { event: () => undefined, reject: (rejection) => rejections.push(rejection) },
    );
    const envelope = decodeKombuEnvelope(Buffer.from('{"body": "card=4111111111111111" oops'), 'x');
    expect(rejections.map((r) => r.detail)).toEqual([
      'a message on routing key task.multi is not valid JSON',
    ]);
    expect(JSON.stringify(envelope)).not.toContain('4111');
    expect(JSON.stringify(envelope)).toContain('not valid JSON');
  });
});
