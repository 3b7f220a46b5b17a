import { execa } from 'execa';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Test key material made with openssl: a CA and a server certificate for 127.0.0.1, or a token signing key. */

export interface TlsFiles {
  caCert: string;
  cert: string;
  key: string;
  /** A client certificate the CA signed, and its key. */
  clientCert: string;
  clientKey: string;
}

async function openssl(cwd: string, ...args: string[]): Promise<void> {
  await execa('openssl', args, { cwd });
}

/** A test CA, a certificate it signed for 127.0.0.1 / localhost, and a client certificate it signed. */
export async function makeTlsFiles(dir: string): Promise<TlsFiles> {
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key');
  await openssl(dir, 'req', '-x509', '-new', '-key', 'ca.key', '-subj', '/CN=ckpt test CA', '-days', '2', '-out', 'ca.crt');
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'server.key');
  await openssl(dir, 'req', '-new', '-key', 'server.key', '-subj', '/CN=127.0.0.1', '-out', 'server.csr');
  await writeFile(join(dir, 'san.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await openssl(
    dir,
    'x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-extfile', 'san.ext', '-out', 'server.crt',
  );
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'client.key');
  await openssl(dir, 'req', '-new', '-key', 'client.key', '-subj', '/CN=ckpt test client', '-out', 'client.csr');
  await writeFile(join(dir, 'client.ext'), 'extendedKeyUsage=clientAuth\n');
  await openssl(dir, 'x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'client.ext', '-out', 'client.crt');
  return {
    caCert: join(dir, 'ca.crt'),
    cert: join(dir, 'server.crt'),
    key: join(dir, 'server.key'),
    clientCert: join(dir, 'client.crt'),
    clientKey: join(dir, 'client.key'),
  };
}

export interface SigningKey {
  /** PEM private key. */
  key: string;
  /** The self-signed certificate's DER, for the JWT `x5c` header. */
  certDer: Buffer;
  /** Path of the PEM certificate, for the registry's `rootcertbundle`. */
  certPath: string;
}

/** An EC P-256 key and a self-signed certificate for signing registry tokens (ES256). */
export async function makeSigningKey(dir: string): Promise<SigningKey> {
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'token.key');
  await openssl(dir, 'req', '-x509', '-new', '-key', 'token.key', '-subj', '/CN=ckpt test token issuer', '-days', '2', '-out', 'token.crt');
  await openssl(dir, 'x509', '-in', 'token.crt', '-outform', 'DER', '-out', 'token.der');
  return {
    key: await readFile(join(dir, 'token.key'), 'utf8'),
    certDer: await readFile(join(dir, 'token.der')),
    certPath: join(dir, 'token.crt'),
  };
}
