// A throwaway PKI made with the real `openssl` CLI and a TLS-terminating TCP proxy in the test
// process, so the bridge's amqps:// and rediss:// paths meet a real TLS handshake in front of the
// real RabbitMQ and Redis without reconfiguring the shared brokers.
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer, type TLSSocket } from 'node:tls';

export interface TlsMaterial {
  readonly dir: string;
  /** The test CA's certificate (what --broker-tls-ca-file gets). */
  readonly caFile: string;
  /** A second, unrelated CA: trusting it must not make the broker trusted. */
  readonly otherCaFile: string;
  /** The server's certificate followed by the CA's (a full chain), for `localhost`/127.0.0.1. */
  readonly serverChainFile: string;
  readonly serverKeyFile: string;
  /** A client certificate signed by the test CA (extendedKeyUsage clientAuth). */
  readonly clientCertFile: string;
  readonly clientKeyFile: string;
  remove(): Promise<void>;
}

function openssl(args: string[], cwd: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('openssl', args, { cwd, timeout: 30_000 }, (error, _stdout, stderr) => {
      if (error === null) resolve();
      else reject(new Error(`openssl ${args.join(' ')} failed: ${error.message}\n${stderr}`));
    });
  });
}

const EC_KEY = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];

async function makeCa(dir: string, name: string, subject: string): Promise<void> {
  await openssl(
    [
      'req',
      '-x509',
      ...EC_KEY,
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      subject,
      '-addext',
      'basicConstraints=critical,CA:TRUE',
      '-addext',
      'keyUsage=critical,keyCertSign,cRLSign',
    ],
    dir,
  );
}

async function makeLeaf(
  dir: string,
  name: string,
  subject: string,
  extensions: string,
): Promise<void> {
  await writeFile(join(dir, `${name}.ext`), extensions);
  await openssl(
    ['req', '-new', ...EC_KEY, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject],
    dir,
  );
  await openssl(
    [
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-days',
      '2',
      '-out',
      `${name}.pem`,
      '-extfile',
      `${name}.ext`,
    ],
    dir,
  );
}

/** Generates a CA, a server certificate for localhost and a client certificate in a temp dir. */
export async function makeTlsMaterial(): Promise<TlsMaterial> {
  const dir = await mkdtemp(join(tmpdir(), 'celery-otel-bridge-tls-'));
  await makeCa(dir, 'ca', '/CN=celery-otel-bridge test CA');
  await makeCa(dir, 'other-ca', '/CN=some other CA');
  await makeLeaf(
    dir,
    'server',
    '/CN=localhost',
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=serverAuth',
      'subjectAltName=DNS:localhost,IP:127.0.0.1',
      '',
    ].join('\n'),
  );
  await makeLeaf(
    dir,
    'client',
    '/CN=celery-otel-bridge',
    [
      'basicConstraints=critical,CA:FALSE',
      'keyUsage=critical,digitalSignature',
      'extendedKeyUsage=clientAuth',
      '',
    ].join('\n'),
  );
  const chain = `${await readFile(join(dir, 'server.pem'), 'utf8')}${await readFile(join(dir, 'ca.pem'), 'utf8')}`;
  await writeFile(join(dir, 'server-chain.pem'), chain);
  return {
    dir,
    caFile: join(dir, 'ca.pem'),
    otherCaFile: join(dir, 'other-ca.pem'),
    serverChainFile: join(dir, 'server-chain.pem'),
    serverKeyFile: join(dir, 'server.key'),
    clientCertFile: join(dir, 'client.pem'),
    clientKeyFile: join(dir, 'client.key'),
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}

export interface TlsProxy {
  readonly port: number;
  /** TLS sessions that completed the handshake and were piped to the target. */
  readonly sessions: number;
  /** Client certificate subjects (CN) seen on accepted sessions. */
  readonly clientSubjects: readonly string[];
  /** The SNI server name of each accepted session ('' when the client sent none). */
  readonly serverNames: readonly string[];
  /** Handshakes that failed on the server side (e.g. no client certificate). */
  readonly handshakeErrors: readonly string[];
  close(): Promise<void>;
}

export interface TlsProxyOptions {
  readonly material: TlsMaterial;
  /** Where the plaintext broker listens. */
  readonly targetPort: number;
  readonly targetHost?: string;
  /** Require a client certificate signed by the test CA. */
  readonly requireClientCert?: boolean;
}

/** A TLS server on 127.0.0.1:<ephemeral> whose sessions are piped to a plain TCP target. */
export async function startTlsProxy(options: TlsProxyOptions): Promise<TlsProxy> {
  const { material } = options;
  const requireClientCert = options.requireClientCert ?? false;
  const sockets = new Set<Socket>();
  const clientSubjects: string[] = [];
  const serverNames: string[] = [];
  const handshakeErrors: string[] = [];
  let sessions = 0;
  const server = createServer(
    {
      cert: await readFile(material.serverChainFile),
      key: await readFile(material.serverKeyFile),
      ca: await readFile(material.caFile),
      requestCert: requireClientCert,
      rejectUnauthorized: requireClientCert,
    },
    (tlsSocket: TLSSocket) => {
      sessions++;
      const sni = (tlsSocket as TLSSocket & { servername?: string | false }).servername;
      serverNames.push(typeof sni === 'string' ? sni : '');
      if (requireClientCert) {
        const cn = tlsSocket.getPeerCertificate().subject?.CN;
        clientSubjects.push(typeof cn === 'string' ? cn : String(cn));
      }
      const upstream = netConnect({
        host: options.targetHost ?? '127.0.0.1',
        port: options.targetPort,
      });
      sockets.add(tlsSocket);
      sockets.add(upstream);
      const closeBoth = (): void => {
        tlsSocket.destroy();
        upstream.destroy();
      };
      tlsSocket.on('close', () => {
        sockets.delete(tlsSocket);
        upstream.end();
      });
      upstream.on('close', () => {
        sockets.delete(upstream);
        tlsSocket.end();
      });
      tlsSocket.on('error', closeBoth);
      upstream.on('error', closeBoth);
      tlsSocket.pipe(upstream);
      upstream.pipe(tlsSocket);
    },
  );
  server.on('tlsClientError', (error: Error) => handshakeErrors.push(error.message));
  server.on('connection', (socket: Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    get sessions() {
      return sessions;
    },
    clientSubjects,
    serverNames,
    handshakeErrors,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy();
        server.close(() => resolve());
      }),
  };
}
