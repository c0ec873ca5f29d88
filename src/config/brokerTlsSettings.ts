import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import { ConfigError } from '../shared/errors.js';
import type { BrokerTlsSettings } from '../brokers/BrokerOptions.js';
import type { BrokerEndpoint } from '../brokers/BrokerOptions.js';
import { optionLabel } from './optionSpecs.js';

/** The raw `--broker-tls-*` values ('' when unset). */
export interface BrokerTlsFlags {
  readonly caFile: string;
  readonly certFile: string;
  readonly keyFile: string;
  readonly servername: string;
  readonly insecure: boolean;
}

/**
 * Reads and checks the `--broker-tls-*` files once, at startup, so a wrong path or a file that
 * holds no certificate is a ConfigError naming the flag (exit 2) instead of a handshake failure
 * later. Error messages name files and flags, never file contents (the key is a secret).
 * Returns undefined when no TLS option is set.
 */
export function brokerTlsSettings(
  broker: BrokerEndpoint,
  flags: BrokerTlsFlags,
): BrokerTlsSettings | undefined {
  const given = [
    flags.caFile !== '' ? 'broker-tls-ca-file' : undefined,
    flags.certFile !== '' ? 'broker-tls-cert-file' : undefined,
    flags.keyFile !== '' ? 'broker-tls-key-file' : undefined,
    flags.servername !== '' ? 'broker-tls-servername' : undefined,
    flags.insecure ? 'broker-tls-insecure' : undefined,
  ].filter((flag): flag is string => flag !== undefined);
  const first = given[0];
  if (first === undefined) return undefined;
  if (!broker.tls) {
    throw new ConfigError(
      `${optionLabel(first)} needs a TLS broker URL (amqps:// or rediss://), but the broker is ` +
        `${broker.redactedUrl}: use the TLS scheme and the broker's TLS port (RabbitMQ: 5671)`,
    );
  }
  if ((flags.certFile === '') !== (flags.keyFile === '')) {
    throw new ConfigError(
      `${optionLabel('broker-tls-cert-file')} and ${optionLabel('broker-tls-key-file')} go together: ` +
        'a client certificate needs its private key',
    );
  }
  const ca = flags.caFile === '' ? undefined : certificates('broker-tls-ca-file', flags.caFile);
  let cert: Buffer | undefined;
  let key: Buffer | undefined;
  if (flags.certFile !== '' && flags.keyFile !== '') {
    cert = certificates('broker-tls-cert-file', flags.certFile);
    key = read('broker-tls-key-file', flags.keyFile);
    try {
      createPrivateKey(key);
    } catch (error) {
      throw new ConfigError(
        `${optionLabel('broker-tls-key-file')}: ${JSON.stringify(flags.keyFile)} is not an unencrypted PEM ` +
          `private key (${(error as Error).message})`,
        { cause: error },
      );
    }
    try {
      createSecureContext({ cert, key });
    } catch (error) {
      throw new ConfigError(
        `${optionLabel('broker-tls-cert-file')} and ${optionLabel('broker-tls-key-file')} do not belong ` +
          `together (${(error as Error).message})`,
        { cause: error },
      );
    }
  }
  return {
    ...(ca !== undefined ? { ca } : {}),
    ...(cert !== undefined && key !== undefined ? { cert, key } : {}),
    ...(flags.servername !== '' ? { servername: flags.servername } : {}),
    insecure: flags.insecure,
  };
}

function read(flag: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    throw new ConfigError(
      `${optionLabel(flag)}: cannot read ${JSON.stringify(path)}: ${(error as Error).message}`,
      { cause: error },
    );
  }
}

const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g;

/** The file, checked to hold at least one PEM certificate, each of which parses. */
function certificates(flag: string, path: string): Buffer {
  const content = read(flag, path);
  const blocks = content.toString('latin1').match(PEM_CERTIFICATE) ?? [];
  if (blocks.length === 0) {
    throw new ConfigError(
      `${optionLabel(flag)}: ${JSON.stringify(path)} holds no PEM certificate ` +
        '(-----BEGIN CERTIFICATE-----); convert a DER file with `openssl x509 -inform der -in FILE -out FILE.pem`',
    );
  }
  for (const [index, block] of blocks.entries()) {
    try {
      new X509Certificate(block);
    } catch (error) {
      throw new ConfigError(
        `${optionLabel(flag)}: certificate ${index + 1} in ${JSON.stringify(path)} does not parse ` +
          `(${(error as Error).message})`,
        { cause: error },
      );
    }
  }
  return content;
}
