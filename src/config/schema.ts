/**
 * JSON Schema of the configuration file (README "Configuration"), validated
 * with Ajv in allErrors mode so an operator sees every problem at once.
 * Defaults are filled in by Ajv (`useDefaults`). Unknown keys are errors
 * everywhere.
 *
 * This is the single source of the configuration's shape: the TypeScript
 * types in config.types.ts are derived from it (`FromSchema`), so adding a
 * field is one edit here. Everything is written `as const` for that reason.
 */

import { KEY_SOURCE_ONE_OF, SIGNER_PROPERTIES } from '../trust/signer-schema.ts';

const seconds = <D extends number>(defaultValue: D, minimum = 0) =>
  ({ type: 'number', minimum, default: defaultValue }) as const;
const nonEmptyString = { type: 'string', minLength: 1 } as const;
const nonEmptyList = <const I extends object>(items: I) => ({ type: 'array', items, minItems: 1 }) as const;

const timeouts = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    connectSeconds: seconds(5, 0.001),
    firstByteSeconds: seconds(15, 0.001),
    idleSeconds: seconds(30, 0.001),
  },
} as const;

export const JWS_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
] as const;

export const configSchema = {
  type: 'object',
  additionalProperties: false,
  required: ['catalog', 'issuers', 'serviceAccounts'],
  properties: {
    listen: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        address: { ...nonEmptyString, default: '127.0.0.1' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 8080 },
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['cert', 'key'],
          properties: { cert: nonEmptyString, key: nonEmptyString },
        },
      },
    },
    admin: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        address: { ...nonEmptyString, default: '127.0.0.1' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 9464 },
      },
    },
    limits: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        maxConcurrentTransfers: {
          type: 'integer',
          minimum: 1,
          default: 256,
          description: 'Concurrent file transfers before new ones get 503 + Retry-After.',
        },
        headersTimeoutSeconds: {
          ...seconds(10, 0.001),
          description: 'Seconds a client may take to send its request headers (slowloris).',
        },
        idleTimeoutSeconds: {
          ...seconds(60, 0.001),
          description:
            'Seconds a connection may sit idle (keep-alive or a stalled reader) before it is closed.',
        },
        maxHeaderBytes: {
          type: 'integer',
          minimum: 1024,
          maximum: 1048576,
          default: 32768,
          description: 'Largest request header block in bytes; beyond it Node answers 431.',
        },
        shutdownGraceSeconds: {
          ...seconds(30),
          description:
            'On SIGTERM/SIGINT: seconds transfers in flight get to finish before the process exits.',
        },
        minClientBytesPerSecond: {
          type: 'integer',
          minimum: 0,
          default: 16384,
          // 16 KiB/s over 30 s: a congested cross-zone link still moves MiB/s, so only a stalled or hostile reader is this slow.
          description:
            'A transfer whose client reads slower than this, over minClientRateWindowSeconds, is dropped (0 turns it off).',
        },
        minClientRateWindowSeconds: {
          type: 'integer',
          minimum: 1,
          maximum: 3600,
          default: 30,
          description:
            'Window over which minClientBytesPerSecond is measured (seconds the client owed a read).',
        },
      },
    },
    workers: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        restartInitialSeconds: seconds(1, 0.01),
        restartMaxSeconds: seconds(30, 0.01),
      },
    },
    transfer: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        readAhead: {
          type: 'integer',
          minimum: 1,
          maximum: 64,
          default: 4,
          description:
            'Chunk reads in flight per chunk-mode transfer; memory per transfer ≈ readAhead × chunkSize.',
        },
        chunkCacheBytes: {
          type: 'integer',
          minimum: 0,
          default: 67108864,
          description:
            'Bytes of verified chunks kept in memory and shared between concurrent callers (0 disables).',
        },
        maxBufferedBytes: {
          type: 'integer',
          minimum: 0,
          default: 100663296,
          description:
            'Hard limit on transfer memory per process (chunks read, hashed, sent or cached); a transfer that cannot get memory waits (docs/tuning.md).',
        },
        memoryWaitSeconds: {
          ...seconds(10, 0.001),
          description:
            'Longest a transfer waits for memory before its first byte; then 503 MG_OVERLOADED with Retry-After.',
        },
        hashWorkers: {
          anyOf: [{ type: 'boolean' }, { type: 'integer', minimum: 1, maximum: 64 }],
          default: true,
        },
        retries: {
          type: 'integer',
          minimum: 0,
          maximum: 20,
          default: 3,
          description:
            'Retries of one piece (a chunk, or the rest of a whole file) on the same location after a transient failure (429, 503 SlowDown, 500/502/504, a reset, a broken or stalled stream), before failing over to the next mirror.',
        },
        retryBackoffMs: {
          type: 'integer',
          minimum: 0,
          default: 200,
          description:
            'Backoff ceiling of the first retry in milliseconds; doubles on each retry (full jitter).',
        },
        retryBackoffMaxMs: {
          type: 'integer',
          minimum: 0,
          default: 5000,
          description: 'Longest single backoff in milliseconds, Retry-After included.',
        },
        retryBudgetSeconds: {
          ...seconds(30),
          description: 'Seconds one piece may spend failing before it stops retrying and only fails over.',
        },
      },
    },
    cache: {
      type: 'object',
      additionalProperties: false,
      required: ['dir'],
      properties: {
        dir: nonEmptyString,
        maxBytes: { type: 'integer', minimum: 0, default: 10737418240 },
      },
    },
    stores: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        file: {
          type: 'object',
          additionalProperties: false,
          required: ['root'],
          properties: { root: nonEmptyString, timeouts },
        },
        s3: {
          type: 'object',
          additionalProperties: false,
          required: ['region'],
          properties: {
            region: nonEmptyString,
            endpoint: nonEmptyString,
            forcePathStyle: { type: 'boolean', default: false },
            credentials: {
              type: 'object',
              additionalProperties: false,
              required: ['accessKeyId', 'secretAccessKey'],
              properties: {
                accessKeyId: nonEmptyString,
                secretAccessKey: nonEmptyString,
                sessionToken: nonEmptyString,
              },
            },
            maxSockets: { type: 'integer', minimum: 1, default: 64 },
            timeouts,
          },
        },
        gcs: {
          type: 'object',
          additionalProperties: false,
          properties: {
            projectId: nonEmptyString,
            apiEndpoint: nonEmptyString,
            keyFilename: nonEmptyString,
            maxSockets: { type: 'integer', minimum: 1, default: 64 },
            timeouts,
          },
        },
        azure: {
          type: 'object',
          additionalProperties: false,
          required: ['accounts'],
          properties: {
            accounts: {
              type: 'object',
              minProperties: 1,
              additionalProperties: {
                type: 'object',
                additionalProperties: false,
                properties: {
                  endpoint: nonEmptyString,
                  connectionString: nonEmptyString,
                  accountKey: nonEmptyString,
                },
              },
            },
            maxSockets: { type: 'integer', minimum: 1, default: 64 },
            timeouts,
          },
        },
      },
    },
    catalog: {
      type: 'object',
      additionalProperties: false,
      required: ['dir'],
      properties: { dir: nonEmptyString, pollSeconds: seconds(30) },
    },
    identity: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        tokenCacheEntries: {
          type: 'integer',
          minimum: 0,
          default: 10000,
          description: 'Verified tokens kept (by SHA-256) until their exp.',
        },
      },
    },
    issuers: nonEmptyList({
      type: 'object',
      additionalProperties: false,
      required: ['name', 'issuer', 'audiences', 'algorithms'],
      properties: {
        name: nonEmptyString,
        issuer: nonEmptyString,
        jwksUri: nonEmptyString,
        jwksFile: nonEmptyString,
        discovery: { type: 'boolean', default: false },
        audiences: nonEmptyList(nonEmptyString),
        algorithms: nonEmptyList({ enum: JWS_ALGORITHMS }),
        clockToleranceSeconds: seconds(30),
        maxTokenLifetimeSeconds: { type: 'integer', minimum: 1 },
        cacheSeconds: {
          ...seconds(600, 1),
          description: 'How long fetched keys are trusted before a refresh.',
        },
        cooldownSeconds: {
          ...seconds(30),
          description:
            'Minimum seconds between re-fetches triggered by an unknown kid, or after a failed fetch.',
        },
        timeoutSeconds: { ...seconds(5, 0.001), description: 'Timeout of one key or discovery fetch.' },
        kubernetes: {
          type: 'boolean',
          default: false,
          description:
            "Admission (docs/admission.md): Pods' service accounts are matched through this issuer.",
        },
      },
    }),
    serviceAccounts: {
      type: 'array',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'issuer', 'subject', 'grants'],
        properties: {
          name: nonEmptyString,
          issuer: nonEmptyString,
          subject: nonEmptyString,
          claims: {
            type: 'object',
            default: {},
            additionalProperties: { type: ['string', 'number', 'boolean'] },
          },
          grants: {
            type: 'array',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['models', 'environments'],
              properties: {
                models: nonEmptyList(nonEmptyString),
                environments: nonEmptyList(nonEmptyString),
              },
            },
          },
        },
      },
    },
    signers: {
      type: 'array',
      default: [],
      description: 'Who may sign releases, each with exactly one key source (docs/trust.md "Signer kinds").',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'environments'],
        properties: {
          name: nonEmptyString,
          environments: nonEmptyList(nonEmptyString),
          ...SIGNER_PROPERTIES,
        },
        oneOf: KEY_SOURCE_ONE_OF,
      },
    },
    upstreamSigners: {
      type: 'array',
      default: [],
      description:
        'OMS signers whose evidence (written by `modelgate intake`) releases of their models must carry (docs/trust.md).',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'models'],
        properties: { name: nonEmptyString, models: nonEmptyList(nonEmptyString), ...SIGNER_PROPERTIES },
        oneOf: KEY_SOURCE_ONE_OF,
      },
    },
    attestors: {
      type: 'array',
      default: [],
      description: 'Who may sign attestations (docs/attestations.md); same key sources as signers.',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name'],
        properties: { name: nonEmptyString, ...SIGNER_PROPERTIES },
        oneOf: KEY_SOURCE_ONE_OF,
      },
    },
    environments: {
      type: 'object',
      default: {},
      additionalProperties: {
        type: 'object',
        additionalProperties: false,
        properties: {
          mode: { enum: ['enforce', 'audit'], default: 'enforce' },
          enforceFrom: nonEmptyString,
          digestRefsOnly: { type: 'boolean', default: true },
          requiredAttestations: {
            type: 'array',
            default: [],
            description: 'Attestations a release needs to be admissible here (docs/attestations.md).',
            items: {
              type: 'object',
              additionalProperties: false,
              required: ['name', 'predicateType', 'attestors'],
              properties: {
                name: nonEmptyString,
                predicateType: nonEmptyString,
                attestors: nonEmptyList(nonEmptyString),
                conditions: {
                  type: 'array',
                  default: [],
                  items: {
                    type: 'object',
                    additionalProperties: false,
                    required: ['path'],
                    properties: {
                      path: nonEmptyString,
                      equals: {},
                      in: { type: 'array', minItems: 1, items: {} },
                      matches: nonEmptyString,
                      exists: { const: true },
                      absent: { const: true },
                    },
                  },
                },
              },
            },
          },
          lineage: {
            type: 'object',
            additionalProperties: false,
            description: 'Releases that must prove their parent (docs/attestations.md "Lineage").',
            properties: {
              requireParentFor: { type: 'array', items: nonEmptyString, default: [] },
              parentEnvironments: nonEmptyList(nonEmptyString),
            },
          },
        },
      },
    },
    exceptions: {
      type: 'array',
      default: [],
      description:
        'The exception register: owned, justified, expiring waivers (docs/attestations.md "Exceptions").',
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['id', 'owner', 'justification', 'environment', 'waive', 'created', 'expires'],
        properties: {
          id: nonEmptyString,
          owner: nonEmptyString,
          justification: nonEmptyString,
          environment: nonEmptyString,
          release: nonEmptyString,
          models: nonEmptyList(nonEmptyString),
          waive: nonEmptyList(nonEmptyString),
          created: nonEmptyString,
          expires: nonEmptyString,
        },
      },
    },
    exceptionMaxDays: {
      type: 'integer',
      minimum: 1,
      default: 30,
      description: 'Longest an exception may run, from created to expires, in days.',
    },
    breakGlass: {
      type: 'object',
      additionalProperties: false,
      required: ['jwksFile'],
      properties: {
        jwksFile: nonEmptyString,
        maxTtlSeconds: { type: 'integer', minimum: 60, default: 14400 },
        incidentPattern: { ...nonEmptyString, default: '^INC-[0-9]+$' },
      },
    },
    // Admission webhook listener (docs/admission.md); TLS is required because the API server only calls https.
    admission: {
      type: 'object',
      additionalProperties: false,
      required: ['tls'],
      properties: {
        address: { ...nonEmptyString, default: '0.0.0.0' },
        port: { type: 'integer', minimum: 0, maximum: 65535, default: 8443 },
        tls: {
          type: 'object',
          additionalProperties: false,
          required: ['cert', 'key'],
          properties: { cert: nonEmptyString, key: nonEmptyString },
        },
        requireModels: { type: 'boolean', default: false },
      },
    },
    logging: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        level: { enum: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], default: 'info' },
      },
    },
  },
} as const;
