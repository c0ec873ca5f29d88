import { isIP } from 'node:net';
import type { ConnectionOptions } from 'node:tls';
import type { BrokerEndpoint } from './BrokerOptions.js';
import type { Logger } from '../log/Logger.js';
import { describeError } from '../shared/describeError.js';

/**
 * The options every broker connection gives `tls.connect` (amqplib's socket options, ioredis's
 * `tls`): undefined for a plain `amqp://` / `redis://` broker, Node's defaults (system CAs, full
 * verification) unless `--broker-tls-*` says otherwise. SNI is the URL's host name (amqplib sends
 * it by itself, ioredis does not: brokers behind an SNI-routing proxy need it), or
 * `--broker-tls-servername`; never an IP address (RFC 6066).
 */
export function brokerTlsOptions(broker: BrokerEndpoint): ConnectionOptions | undefined {
  if (!broker.tls) return undefined;
  const settings = broker.tlsSettings;
  const options: ConnectionOptions = {};
  if (isIP(broker.hostname) === 0) options.servername = broker.hostname;
  if (settings === undefined) return options;
  if (settings.ca !== undefined) options.ca = settings.ca;
  if (settings.cert !== undefined && settings.key !== undefined) {
    options.cert = settings.cert;
    options.key = settings.key;
  }
  if (settings.servername !== undefined) options.servername = settings.servername;
  if (settings.insecure) options.rejectUnauthorized = false;
  return options;
}

/** Logged once, when the bridge starts consuming: verification is off. */
export function warnIfTlsInsecure(broker: BrokerEndpoint, logger: Logger): void {
  if (!broker.tls || broker.tlsSettings?.insecure !== true) return;
  logger.warn(
    "--broker-tls-insecure: the broker's TLS certificate is not verified, so anyone on the " +
      'network path can pose as the broker and read its password; pass --broker-tls-ca-file instead',
    { broker: broker.redactedUrl },
  );
}

const UNTRUSTED = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'CERT_UNTRUSTED',
  'CERT_SIGNATURE_FAILURE',
  'CERT_REJECTED',
]);
const EXPIRED = new Set(['CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID']);
const CLIENT_CERT_REFUSED = new Set([
  'ERR_SSL_TLSV13_ALERT_CERTIFICATE_REQUIRED',
  'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
  'ERR_SSL_SSLV3_ALERT_CERTIFICATE_UNKNOWN',
  'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA',
  'ERR_SSL_TLSV1_ALERT_ACCESS_DENIED',
  'ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE',
]);
const NOT_TLS = new Set(['ERR_SSL_WRONG_VERSION_NUMBER', 'ERR_SSL_PACKET_LENGTH_TOO_LONG']);

/**
 * An error from connecting to the broker, for a log line. A TLS failure becomes one sentence that
 * says what failed and which option fixes it, e.g. "TLS handshake with localhost:5671 failed:
 * self-signed certificate in certificate chain; pass --broker-tls-ca-file with the CA that signed
 * the broker's certificate". Anything else is {@link describeError}'s message.
 */
export function describeBrokerError(error: unknown, broker: BrokerEndpoint): string {
  if (!isTlsFailure(error, broker)) return describeError(error);
  const advice = tlsAdvice(tlsCode(error) ?? '', broker);
  const what = `TLS handshake with ${broker.hostname}:${broker.port} failed: ${tlsReason(error)}`;
  return advice === undefined ? what : `${what}; ${advice}`;
}

/** Whether connecting failed in TLS (certificate checks, alerts), not in TCP or the protocol. */
export function isTlsFailure(error: unknown, broker: BrokerEndpoint): error is Error {
  const code = tlsCode(error);
  if (!broker.tls || code === undefined || !(error instanceof Error)) return false;
  return (
    tlsAdvice(code, broker) !== undefined ||
    code.startsWith('ERR_SSL_') ||
    code.startsWith('ERR_TLS_')
  );
}

function tlsCode(error: unknown): string | undefined {
  const code = (error as { code?: unknown } | null | undefined)?.code;
  return typeof code === 'string' ? code : undefined;
}

function tlsAdvice(code: string, broker: BrokerEndpoint): string | undefined {
  if (UNTRUSTED.has(code)) {
    return broker.tlsSettings?.ca === undefined
      ? "pass --broker-tls-ca-file with the CA that signed the broker's certificate"
      : "the file given to --broker-tls-ca-file does not hold the CA that signed the broker's certificate";
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') {
    return (
      "the broker's certificate is not issued for this host name: put the name it was issued for " +
      'in the broker URL, or pass --broker-tls-servername'
    );
  }
  if (EXPIRED.has(code)) return "renew the broker's certificate (or check this machine's clock)";
  if (CLIENT_CERT_REFUSED.has(code)) {
    return broker.tlsSettings?.cert === undefined
      ? 'the broker asks for a client certificate: pass --broker-tls-cert-file and --broker-tls-key-file'
      : 'the broker refused the client certificate: check that the broker trusts the CA that signed --broker-tls-cert-file';
  }
  if (NOT_TLS.has(code)) {
    return "that port does not speak TLS: use the broker's TLS port (RabbitMQ: 5671), or amqp:// / redis:// for a plain port";
  }
  return undefined;
}

/** OpenSSL's messages carry file names and codes; keep the reason ("tlsv13 alert ..."). */
function tlsReason(error: Error): string {
  const openssl = /:SSL routines:[^:]*:([^:]+)/.exec(error.message);
  return (openssl?.[1] ?? error.message).trim();
}
