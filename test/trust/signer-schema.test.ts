import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Ajv } from 'ajv';
import { KEY_SOURCE_ONE_OF, SIGNER_PROPERTIES } from '../../src/trust/signer-schema.ts';
import { TrustConfigError } from '../../src/trust/trust-error.ts';
import { createVerifier } from '../../src/trust/verifier.ts';

// The same Ajv options as the configuration schema: strict, so a schema mistake fails here first.
const validate = new Ajv({ allErrors: true, strict: true, useDefaults: true }).compile({
  type: 'object',
  additionalProperties: false,
  required: ['name'],
  properties: { name: { type: 'string' }, ...SIGNER_PROPERTIES },
  oneOf: KEY_SOURCE_ONE_OF,
});

describe('when a signer item is validated with the key-source schema', () => {
  it('accepts exactly one key source of each kind, with an optional revocation', () => {
    const keyless = { trustedRoot: 'r.json', identities: [{ issuer: 'https://i', subjectPattern: '^a$' }] };
    for (const item of [
      { name: 'a', jwksFile: 'k.json' },
      { name: 'a', publicKeyFile: 'k.pem' },
      {
        name: 'a',
        certificate: { caFile: 'ca.pem' },
        revoked: { at: '2026-01-01T00:00:00Z', reason: 'leak' },
      },
      { name: 'a', sigstore: { ...keyless, tlogThreshold: 2 } },
    ]) {
      assert.equal(validate(item), true, JSON.stringify(validate.errors));
    }
  });

  it('refuses no key source, two key sources, and a keyless identity without a subject', () => {
    assert.equal(validate({ name: 'a' }), false);
    assert.equal(validate({ name: 'a', jwksFile: 'k.json', publicKeyFile: 'k.pem' }), false);
    assert.equal(
      validate({ name: 'a', sigstore: { trustedRoot: 'r', identities: [{ issuer: 'https://i' }] } }),
      false,
    );
    assert.equal(validate({ name: 'a', sigstore: { trustedRoot: 'r', identities: [] } }), false);
  });
});

describe('when a revocation instant is not RFC 3339', () => {
  it('fails at load with a TrustConfigError', async () => {
    const spec = {
      name: 'a',
      publicKeyFile: 'keys/signing-key-pub.pem',
      revoked: { at: 'yesterday', reason: 'x' },
    };
    await assert.rejects(createVerifier(spec, `${import.meta.dirname}/../fixtures/oms`), TrustConfigError);
  });
});
