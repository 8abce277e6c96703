/**
 * Test certificate authorities made with the openssl CLI (real X.509, no
 * hand-written ASN.1): roots, intermediates and leaves with or without the
 * codeSigning usage, and Fulcio-style leaves carrying a SAN and an OIDC issuer.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCert {
  certFile: string;
  keyFile: string;
  pem: string;
  der: Buffer;
}

/** The Fulcio extension holding the OIDC issuer (v1: the raw issuer bytes). */
const FULCIO_ISSUER_V1 = '1.3.6.1.4.1.57264.1.1';

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function newKey(keyFile: string, curve: string): void {
  openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', `ec_paramgen_curve:${curve}`, '-out', keyFile]);
}

function load(certFile: string, keyFile: string): TestCert {
  const pem = readFileSync(certFile, 'utf8');
  return { certFile, keyFile, pem, der: new X509Certificate(pem).raw };
}

/** A self-signed root CA. */
export function makeRoot(dir: string, name: string): TestCert {
  const keyFile = join(dir, `${name}.key`);
  const certFile = join(dir, `${name}.pem`);
  newKey(keyFile, 'P-256');
  openssl([
    'req',
    '-x509',
    '-new',
    '-key',
    keyFile,
    '-out',
    certFile,
    '-days',
    '3650',
    '-subj',
    `/CN=${name}`,
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  return load(certFile, keyFile);
}

export interface LeafOptions {
  /** Issue a CA (intermediate) instead of a leaf. */
  ca?: boolean;
  /** Leaf: include extendedKeyUsage codeSigning (default true). */
  codeSigning?: boolean;
  days?: number;
  curve?: string;
  /** Fulcio-style: SAN email and OIDC issuer extension, empty subject. */
  email?: string;
  oidcIssuer?: string;
}

/** A certificate issued by `issuer`. */
export function issue(dir: string, name: string, issuer: TestCert, options: LeafOptions = {}): TestCert {
  const keyFile = join(dir, `${name}.key`);
  const csrFile = join(dir, `${name}.csr`);
  const certFile = join(dir, `${name}.pem`);
  const extFile = join(dir, `${name}.ext`);
  newKey(keyFile, options.curve ?? 'P-256');
  openssl(['req', '-new', '-key', keyFile, '-out', csrFile, '-subj', `/CN=${name}`]);
  const extensions = options.ca
    ? ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign']
    : [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature',
        ...(options.codeSigning === false ? [] : ['extendedKeyUsage=codeSigning']),
        ...(options.email === undefined ? [] : [`subjectAltName=email:${options.email}`]),
        ...(options.oidcIssuer === undefined
          ? []
          : [`${FULCIO_ISSUER_V1}=DER:${Buffer.from(options.oidcIssuer).toString('hex')}`]),
      ];
  writeFileSync(extFile, `${extensions.join('\n')}\n`);
  openssl([
    'x509',
    '-req',
    '-in',
    csrFile,
    '-CA',
    issuer.certFile,
    '-CAkey',
    issuer.keyFile,
    '-CAcreateserial',
    '-out',
    certFile,
    '-days',
    String(options.days ?? 365),
    '-extfile',
    extFile,
  ]);
  return load(certFile, keyFile);
}
