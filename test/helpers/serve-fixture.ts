import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { createSigner, type TestSigner } from './releases.ts';
import { generateTestKey, mintKubernetesToken, writeJwksFile } from './tokens.ts';

export const FIXTURE_ISSUER = 'https://issuer.fixture.modelgate.invalid';

/**
 * A folder laid out for a `modelgate serve` process: `models/` (the file
 * store root), `releases/` (the catalog), an ES256 issuer with a token for
 * `system:serviceaccount:fraud:inference` granted every model in `prod`, and a
 * release signer trusted for `prod`.
 */
export interface ServeFixture {
  dir: string;
  models: string;
  releases: string;
  token: string;
  signer: TestSigner;
  /** The configuration object, with `extra` merged over the top level. */
  config(extra?: Record<string, unknown>): Record<string, unknown>;
  /** Writes the configuration as `dir/NAME` and returns its path. */
  writeConfig(name: string, extra?: Record<string, unknown>): Promise<string>;
  remove(): Promise<void>;
}

export async function createServeFixture(prefix: string): Promise<ServeFixture> {
  const dir = await mkdtemp(join(tmpdir(), `modelgate-${prefix}-`));
  const models = join(dir, 'models');
  const releases = join(dir, 'releases');
  await Promise.all([mkdir(models), mkdir(releases)]);
  const key = await generateTestKey('ES256');
  const jwksFile = await writeJwksFile(dir, [key], 'issuer.jwks.json');
  const token = await mintKubernetesToken(key, { issuer: FIXTURE_ISSUER });
  const signer = await createSigner(dir, 'release');
  const config = (extra: Record<string, unknown> = {}) => ({
    listen: { address: '127.0.0.1', port: 0 },
    admin: { address: '127.0.0.1', port: 0 },
    stores: { file: { root: models } },
    catalog: { dir: releases, pollSeconds: 0 },
    issuers: [
      { name: 't', issuer: FIXTURE_ISSUER, jwksFile, audiences: ['modelgate'], algorithms: ['ES256'] },
    ],
    serviceAccounts: [
      {
        name: 'sa',
        issuer: 't',
        subject: 'system:serviceaccount:fraud:inference',
        grants: [{ models: ['**'], environments: ['prod'] }],
      },
    ],
    signers: [{ name: 'release', jwksFile: signer.jwksFile, environments: ['prod'] }],
    environments: { prod: { mode: 'enforce', digestRefsOnly: true } },
    ...extra,
  });
  return {
    dir,
    models,
    releases,
    token,
    signer,
    config,
    async writeConfig(name, extra) {
      const file = join(dir, name);
      await writeFile(file, stringify(config(extra)));
      return file;
    },
    remove: () => rm(dir, { recursive: true, force: true }),
  };
}
