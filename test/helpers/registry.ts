import { execa, type ResultPromise } from 'execa';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { makeSigningKey, makeTlsFiles } from './certs.js';
import { startTokenServer, type TokenServer, type TokenServerOptions } from './token-server.js';

/**
 * Starts Debian's real `docker-registry` (distribution 2.8) on a free loopback port in a temporary
 * directory: without auth, with htpasswd Basic auth, or with token auth served by a test token
 * server; optionally with TLS from a test CA. `stop()` kills it and removes everything.
 */

export interface RegistryServerOptions {
  auth?: 'none' | 'htpasswd' | 'token';
  /** user -> password, for htpasswd and token auth. Default `{ alice: 'correct horse' }`. */
  users?: Record<string, string>;
  /** Token server settings (token auth only). */
  token?: Pick<TokenServerOptions, 'ttlSeconds' | 'announcedExpiresIn' | 'grant' | 'refreshTokens'>;
  tls?: boolean;
  /** With tls: refuse clients without a certificate the test CA signed (mTLS). */
  clientCerts?: boolean;
  /** TLS with this certificate and key instead of the test CA's. */
  tlsFiles?: { cert: string; key: string };
}

export interface RegistryServer {
  /** `127.0.0.1:PORT` */
  host: string;
  /** `http://127.0.0.1:PORT` or `https://...` */
  url: string;
  dir: string;
  /** PEM of the test CA (TLS only). */
  caCert?: Buffer;
  /** A client certificate and key the test CA signed, as files (TLS only). */
  client?: { cert: string; key: string };
  tokenServer?: TokenServer;
  /** Sends the registry process a signal: SIGSTOP makes a registry that accepts connections and answers nothing. */
  signal(name: NodeJS.Signals): void;
  stop(): Promise<void>;
}

export const DEFAULT_USERS = { alice: 'correct horse' };

export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function yaml(value: unknown, indent = ''): string {
  if (typeof value !== 'object' || value === null) return `${JSON.stringify(value)}\n`;
  return Object.entries(value as Record<string, unknown>)
    .map(([k, v]) => {
      if (Array.isArray(v)) return `${indent}${k}:\n${v.map((item) => `${indent}  - ${JSON.stringify(item)}\n`).join('')}`;
      return typeof v === 'object' && v !== null ? `${indent}${k}:\n${yaml(v, `${indent}  `)}` : `${indent}${k}: ${JSON.stringify(v)}\n`;
    })
    .join('');
}

export async function startRegistry(options: RegistryServerOptions = {}): Promise<RegistryServer> {
  const dir = await mkdtemp(join(tmpdir(), 'ckpt-registry-'));
  const users = options.users ?? DEFAULT_USERS;
  let tokenServer: TokenServer | undefined;
  let child: ResultPromise | undefined;
  try {
    const port = await freePort();
    const http: Record<string, unknown> = { addr: `127.0.0.1:${port}`, secret: 'ckpt-test-secret' };
    let caCert: Buffer | undefined;
    let client: RegistryServer['client'];
    if (options.tlsFiles) http.tls = { certificate: options.tlsFiles.cert, key: options.tlsFiles.key };
    else if (options.tls) {
      const tls = await makeTlsFiles(dir);
      http.tls = { certificate: tls.cert, key: tls.key, ...(options.clientCerts ? { clientcas: [tls.caCert] } : {}) };
      caCert = await readFile(tls.caCert);
      client = { cert: tls.clientCert, key: tls.clientKey };
    }
    const config: Record<string, unknown> = {
      version: 0.1,
      log: { level: 'error', accesslog: { disabled: true } },
      storage: {
        filesystem: { rootdirectory: join(dir, 'data') },
        delete: { enabled: true },
        maintenance: { uploadpurging: { enabled: false } },
      },
      http,
    };
    if (options.auth === 'htpasswd') {
      const file = join(dir, 'htpasswd');
      await writeFile(file, '');
      for (const [user, password] of Object.entries(users)) {
        await execa('htpasswd', ['-B', '-b', file, user, password]);
      }
      config.auth = { htpasswd: { realm: 'ckpt-test', path: file } };
    } else if (options.auth === 'token') {
      const key = await makeSigningKey(dir);
      const issuer = 'ckpt-test-issuer';
      const service = 'ckpt-test-registry';
      tokenServer = await startTokenServer({ key, issuer, service, users, ...options.token });
      config.auth = { token: { realm: tokenServer.realm, service, issuer, rootcertbundle: key.certPath } };
    }
    const configPath = join(dir, 'config.yml');
    await writeFile(configPath, yaml(config));
    const proc = execa('docker-registry', ['serve', configPath], { cwd: dir, reject: false, all: true, buffer: true });
    child = proc;
    const scheme = options.tls || options.tlsFiles ? 'https' : 'http';
    await waitReady(port, proc);
    const started = proc;
    const token = tokenServer;
    return {
      host: `127.0.0.1:${port}`,
      url: `${scheme}://127.0.0.1:${port}`,
      dir,
      caCert,
      client,
      tokenServer,
      signal: (name) => started.kill(name),
      async stop() {
        started.kill('SIGKILL');
        await started;
        await token?.stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    child?.kill('SIGKILL');
    await child;
    await tokenServer?.stop();
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Waits until the port accepts connections, failing with the registry's output if it exits. */
async function waitReady(port: number, proc: ResultPromise): Promise<void> {
  let exited = false;
  void proc.then(() => {
    exited = true;
  });
  const { connect } = await import('node:net');
  for (let i = 0; i < 200; i++) {
    if (exited) throw new Error(`docker-registry exited: ${String((await proc).all)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    await delay(25);
  }
  throw new Error('docker-registry did not start within 5 s');
}
