/**
 * JSON Schema pieces for a signer's key source (docs/trust.md "Signer kinds"),
 * for the configuration schema to spread into `signers` and `upstreamSigners`
 * items: `{ ...SIGNER_PROPERTIES, name, environments }` plus
 * `oneOf: KEY_SOURCE_ONE_OF` (exactly one key source). Kept beside the
 * verifiers so the shape and the factory that reads it change together.
 */
const nonEmptyString = { type: 'string', minLength: 1 } as const;

// Each branch names its own properties: Ajv's strict mode wants `required` names defined beside it.
const identity = {
  oneOf: [
    {
      type: 'object',
      additionalProperties: false,
      required: ['issuer', 'subject'],
      properties: { issuer: nonEmptyString, subject: nonEmptyString },
    },
    {
      type: 'object',
      additionalProperties: false,
      required: ['issuer', 'subjectPattern'],
      properties: { issuer: nonEmptyString, subjectPattern: nonEmptyString },
    },
  ],
} as const;

/** Properties a signer item may have besides `name` and `environments` / `models`. */
export const SIGNER_PROPERTIES = {
  jwksFile: nonEmptyString,
  publicKeyFile: nonEmptyString,
  certificate: {
    type: 'object',
    additionalProperties: false,
    required: ['caFile'],
    properties: { caFile: nonEmptyString },
  },
  sigstore: {
    type: 'object',
    additionalProperties: false,
    required: ['trustedRoot', 'identities'],
    properties: {
      trustedRoot: nonEmptyString,
      identities: { type: 'array', minItems: 1, items: identity },
      // Default 1, applied by the verifier (Ajv ignores defaults under oneOf).
      tlogThreshold: { type: 'integer', minimum: 1 },
    },
  },
  revoked: {
    type: 'object',
    additionalProperties: false,
    required: ['at', 'reason'],
    // `at` is checked as RFC 3339 by createVerifier (no Ajv formats plugin here).
    properties: { at: nonEmptyString, reason: nonEmptyString },
  },
} as const;

/** Exactly one key source per signer. */
export const KEY_SOURCE_ONE_OF = (['jwksFile', 'publicKeyFile', 'certificate', 'sigstore'] as const).map(
  (key) => ({ required: [key], properties: { [key]: SIGNER_PROPERTIES[key] } }),
);
