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

/**
 * A root CA, an issuing CA it signed, and a certificate for 127.0.0.1 the issuing CA signed (the
 * leaf alone in `cert`, as a registry may serve it): what a company hands out is often the issuing CA.
 */
export async function makeIssuedChain(dir: string): Promise<{ issuingCa: string; cert: string; key: string }> {
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'root.key');
  await openssl(dir, 'req', '-x509', '-new', '-key', 'root.key', '-subj', '/CN=ckpt test root', '-days', '2', '-out', 'root.crt');
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'issuing.key');
  await openssl(dir, 'req', '-new', '-key', 'issuing.key', '-subj', '/CN=ckpt test issuing CA', '-out', 'issuing.csr');
  await writeFile(join(dir, 'issuing.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n');
  await openssl(dir, 'x509', '-req', '-in', 'issuing.csr', '-CA', 'root.crt', '-CAkey', 'root.key', '-CAcreateserial', '-days', '2', '-extfile', 'issuing.ext', '-out', 'issuing.crt');
  await openssl(dir, 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'leaf.key');
  await openssl(dir, 'req', '-new', '-key', 'leaf.key', '-subj', '/CN=127.0.0.1', '-out', 'leaf.csr');
  await writeFile(join(dir, 'leaf.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  await openssl(dir, 'x509', '-req', '-in', 'leaf.csr', '-CA', 'issuing.crt', '-CAkey', 'issuing.key', '-CAcreateserial', '-days', '2', '-extfile', 'leaf.ext', '-out', 'leaf.crt');
  return { issuingCa: join(dir, 'issuing.crt'), cert: join(dir, 'leaf.crt'), key: join(dir, 'leaf.key') };
}
