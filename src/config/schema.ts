/**
 * JSON Schema of the configuration file (SPEC §6), validated with Ajv in
 * allErrors mode so an operator sees every problem at once. Defaults are
 * filled in by Ajv (`useDefaults`). Unknown keys are errors everywhere.
 */

const seconds = (defaultValue: number, minimum = 0) => ({ type: 'number', minimum, default: defaultValue });
const nonEmptyString = { type: 'string', minLength: 1 };
const nonEmptyList = (items: object) => ({ type: 'array', items, minItems: 1 });

const timeouts = {
  type: 'object',
  additionalProperties: false,
  default: {},
  properties: {
    connectSeconds: seconds(5, 0.001),
    firstByteSeconds: seconds(15, 0.001),
    idleSeconds: seconds(30, 0.001),
  },
};

const algorithms = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA'];

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
        maxConcurrentTransfers: { type: 'integer', minimum: 1, default: 256 },
        headersTimeoutSeconds: seconds(10, 0.001),
        idleTimeoutSeconds: seconds(60, 0.001),
        maxHeaderBytes: { type: 'integer', minimum: 1024, maximum: 1048576, default: 32768 },
        shutdownGraceSeconds: seconds(30),
      },
    },
    transfer: {
      type: 'object',
      additionalProperties: false,
      default: {},
      properties: {
        readAhead: { type: 'integer', minimum: 1, maximum: 64, default: 4 },
        chunkCacheBytes: { type: 'integer', minimum: 0, default: 67108864 },
        maxBufferedBytes: { type: 'integer', minimum: 0, default: 100663296 },
        hashWorkers: {
          anyOf: [{ type: 'boolean' }, { type: 'integer', minimum: 1, maximum: 64 }],
          default: true,
        },
        retries: { type: 'integer', minimum: 0, maximum: 20, default: 3 },
        retryBackoffMs: { type: 'integer', minimum: 0, default: 200 },
        retryBackoffMaxMs: { type: 'integer', minimum: 0, default: 5000 },
        retryBudgetSeconds: seconds(30),
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
      properties: { tokenCacheEntries: { type: 'integer', minimum: 0, default: 10000 } },
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
        algorithms: nonEmptyList({ enum: algorithms }),
        clockToleranceSeconds: seconds(30),
        maxTokenLifetimeSeconds: { type: 'integer', minimum: 1 },
        cacheSeconds: seconds(600, 1),
        cooldownSeconds: seconds(30),
        timeoutSeconds: seconds(5, 0.001),
        // Admission (docs/admission.md): Pods' service accounts are matched through this issuer.
        kubernetes: { type: 'boolean', default: false },
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
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['name', 'jwksFile', 'environments'],
        properties: {
          name: nonEmptyString,
          jwksFile: nonEmptyString,
          environments: nonEmptyList(nonEmptyString),
        },
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
        },
      },
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
