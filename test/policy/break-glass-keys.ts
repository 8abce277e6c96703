import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CryptoKey, exportJWK, generateKeyPair, type JWK } from 'jose';

/** A key pair generated at run time; private keys never live in the repository. */
export interface TestKey {
  kid: string;
  alg: 'ES256' | 'EdDSA' | 'RS256' | 'PS256';
  privateKey: CryptoKey;
  privateJwk: JWK;
  publicJwk: JWK;
}

export async function generateTestKey(kid: string, alg: TestKey['alg'] = 'ES256'): Promise<TestKey> {
  const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
  const privateJwk = { ...(await exportJWK(privateKey)), kid, alg };
  const publicJwk = { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' };
  return { kid, alg, privateKey, privateJwk, publicJwk };
}

/** A temp folder holding key files the way `modelgate keygen` writes them. */
export interface KeyDir {
  dir: string;
  /** Writes NAME.private.jwk.json and NAME.jwks.json; returns their paths. */
  write(name: string, key: TestKey): Promise<{ privateFile: string; jwksFile: string }>;
  writeRaw(name: string, text: string): Promise<string>;
  remove(): Promise<void>;
}

export async function createKeyDir(): Promise<KeyDir> {
  const dir = await mkdtemp(join(tmpdir(), 'modelgate-break-glass-'));
  return {
    dir,
    async write(name, key) {
      const privateFile = join(dir, `${name}.private.jwk.json`);
      const jwksFile = join(dir, `${name}.jwks.json`);
      await writeFile(privateFile, JSON.stringify(key.privateJwk), { mode: 0o600 });
      await writeFile(jwksFile, JSON.stringify({ keys: [key.publicJwk] }));
      return { privateFile, jwksFile };
    },
    async writeRaw(name, text) {
      const file = join(dir, name);
      await writeFile(file, text);
      return file;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
