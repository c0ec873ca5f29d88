import { diag } from '@opentelemetry/api';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { parseBrokerUrl } from '../../src/config/brokerUrl.js';
import { installDiagLogger } from '../../src/log/installDiagLogger.js';
import { Logger } from '../../src/log/Logger.js';
import { redactUrl, secretRedactor } from '../../src/log/redact.js';
import {
  brokerTlsOptions,
  describeBrokerError,
  isTlsFailure,
} from '../../src/source/brokerTlsOptions.js';
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
    installDiagLogger(new Logger('info', (line) => lines.push(line)), options);
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
});
