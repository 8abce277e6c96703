import { Readable } from 'node:stream';
import { DefaultAzureCredential } from '@azure/identity';
import {
  type AnonymousCredential,
  BlobServiceClient,
  newPipeline,
  type RequestPolicyFactory,
  StorageSharedKeyCredential,
} from '@azure/storage-blob';
import type { AzureAccountConfig, AzureStoreConfig } from '../../config/config.types.ts';
import { ModelgateError } from '../../errors.ts';
import {
  acceptRangedAnswer,
  checkEtagPin,
  createStoreAgents,
  disambiguatePinFailure,
  isTimeoutError,
  type StoreAgents,
  transientAnswer,
  transientTransport,
} from '../cloud-http.ts';
import {
  type ByteRange,
  type ObjectVersion,
  probeScopes,
  type ReadOptions,
  type ReadResult,
  type Store,
} from '../store.ts';

type Credential = StorageSharedKeyCredential | AnonymousCredential | DefaultAzureCredential;

/**
 * Azure Blob Storage: `az://account/container/blob`, where the account must
 * be configured. One `BlobServiceClient` per account, created once:
 * `connectionString` when set, else `accountKey` (shared key), else
 * `DefaultAzureCredential` (AKS workload identity, managed identity,
 * environment). The endpoint is `https://{account}.blob.core.windows.net`
 * unless configured. The SDK does not retry (neither requests nor broken
 * bodies): the integrity engine retries from chunk boundaries and fails over
 * to mirrors. Requests run on this store's keep-alive agent, which applies
 * `maxSockets` and the connect timeout.
 *
 * The version is the ETag; pinned reads send `If-Match` and compare the
 * answered ETag as well.
 */
export function createAzureStore(config: AzureStoreConfig): Store {
  const agents = createStoreAgents({
    maxSockets: config.maxSockets,
    connectTimeoutMs: config.timeouts.connectSeconds * 1000,
  });
  const clients = new Map<string, BlobServiceClient>();
  for (const [account, accountConfig] of Object.entries(config.accounts)) {
    clients.set(account, createServiceClient(account, accountConfig, agents));
  }

  function blobClientFor(location: string) {
    const { account, container, blob } = parseAzureLocation(location);
    const client = clients.get(account);
    if (client === undefined) {
      throw new ModelgateError(
        'MG_SOURCE_FAILED',
        `${location}: storage account ${JSON.stringify(account)} is not configured under stores.azure.accounts`,
      );
    }
    return client.getContainerClient(container).getBlobClient(blob);
  }

  async function properties(location: string, signal: AbortSignal, pin?: string): Promise<ObjectVersion> {
    const blobClient = blobClientFor(location);
    try {
      const props = await blobClient.getProperties({
        abortSignal: signal,
        ...(pin === undefined ? {} : { conditions: { ifMatch: pin } }),
      });
      if (props.etag === undefined || props.contentLength === undefined) {
        throw new ModelgateError('MG_SOURCE_FAILED', `${location}: properties lack ETag or size`);
      }
      checkEtagPin(location, pin, props.etag);
      return { size: props.contentLength, version: props.etag };
    } catch (error) {
      throw await disambiguatePinFailure(mapAzureError(error, location, signal, pin), pin, () =>
        properties(location, signal),
      );
    }
  }

  return {
    kind: 'azure',
    timeouts: config.timeouts,

    stat(location: string, signal: AbortSignal): Promise<ObjectVersion> {
      return properties(location, signal);
    },

    async read(location: string, range: ByteRange, options: ReadOptions): Promise<ReadResult> {
      const blobClient = blobClientFor(location);
      const { signal, pin } = options;
      signal.throwIfAborted();
      if (range.end <= range.start) {
        const info = await properties(location, signal, pin);
        return { stream: Readable.from([]), version: info.version, size: info.size };
      }
      let response: Awaited<ReturnType<typeof blobClient.download>>;
      try {
        response = await blobClient.download(range.start, range.end - range.start, {
          abortSignal: signal,
          // A body cut short is an error for the engine to retry, not for the SDK to resume.
          maxRetryRequests: 0,
          ...(pin === undefined ? {} : { conditions: { ifMatch: pin } }),
        });
      } catch (error) {
        if (statusOf(error) === 416) {
          // The range starts at or past the end (or the blob is empty): no bytes, the real size.
          const info = await properties(location, signal, pin);
          return { stream: Readable.from([]), version: info.version, size: info.size };
        }
        throw await disambiguatePinFailure(mapAzureError(error, location, signal, pin), pin, () =>
          properties(location, signal),
        );
      }
      return acceptRangedAnswer({
        location,
        operation: 'download',
        body: response.readableStreamBody,
        etag: response.etag,
        contentRange: response.contentRange,
        contentLength: response.contentLength,
        range,
        pin,
        signal,
      });
    },

    probe(locations: readonly string[], signal: AbortSignal): Promise<void> {
      // Container properties: one authenticated request per container, no blob read.
      return probeScopes(
        locations,
        (location) => {
          const { account, container } = parseAzureLocation(location);
          return `${account}/${container}`;
        },
        async (scope) => {
          const [account = '', container = ''] = scope.split('/');
          const client = clients.get(account);
          if (client === undefined)
            throw new Error('storage account is not configured under stores.azure.accounts');
          await client.getContainerClient(container).getProperties({ abortSignal: signal });
        },
      );
    },

    async close(): Promise<void> {
      agents.destroy();
    },
  };
}

function createServiceClient(
  account: string,
  config: AzureAccountConfig,
  agents: StoreAgents,
): BlobServiceClient {
  let url: string;
  let credential: Credential;
  if (config.connectionString !== undefined) {
    // Parsed by the SDK (key, SAS and development-storage forms); rebuilt below on our own pipeline.
    const parsed = BlobServiceClient.fromConnectionString(config.connectionString);
    url = parsed.url;
    credential = parsed.credential as Credential;
  } else {
    url = config.endpoint ?? `https://${account}.blob.core.windows.net`;
    credential =
      config.accountKey !== undefined
        ? new StorageSharedKeyCredential(account, config.accountKey)
        : new DefaultAzureCredential();
  }
  const pipeline = newPipeline(credential, {
    retryOptions: { maxTries: 1 },
    keepAliveOptions: { enable: true },
  });
  pipeline.factories.push(agentPolicyFactory(agents));
  return new BlobServiceClient(url, pipeline);
}

/** Sends every request of this client on the store's agents (pool size, connect timeout). */
function agentPolicyFactory(agents: StoreAgents): RequestPolicyFactory {
  return {
    create: (nextPolicy) => ({
      sendRequest: (request) => {
        request.agent = agents.forUrl(request.url);
        return nextPolicy.sendRequest(request);
      },
    }),
  };
}

/** Splits `az://account/container/blob`; the blob name keeps its `/`s. */
export function parseAzureLocation(location: string): { account: string; container: string; blob: string } {
  const match = /^az:\/\/([^/]+)\/([^/]+)\/(.+)$/s.exec(location);
  const account = match?.[1];
  const container = match?.[2];
  const blob = match?.[3];
  // Account and container naming rules. `.` and `..` segments are refused: URL normalization would
  // turn `a/../b` into another blob, or another container, than the one named.
  if (
    account === undefined ||
    container === undefined ||
    blob === undefined ||
    !/^[a-z0-9]{3,24}$/.test(account) ||
    !/^(?:\$root|\$web|[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62})$/.test(container) ||
    blob.split('/').some((segment) => segment === '.' || segment === '..') ||
    blob.length > 1024
  ) {
    throw new ModelgateError('MG_SOURCE_FAILED', `malformed az location: ${JSON.stringify(location)}`);
  }
  return { account, container, blob };
}

function statusOf(error: unknown): number | undefined {
  return (error as { statusCode?: number } | undefined)?.statusCode;
}

/** The answer's `Retry-After`: a RestError keeps the response, whose headers are an `HttpHeaders`. */
function retryAfterOf(error: unknown): string | undefined {
  const headers = (error as { response?: { headers?: { get?(name: string): string | undefined } } })?.response
    ?.headers;
  return typeof headers?.get === 'function' ? headers.get('retry-after') : undefined;
}

function mapAzureError(error: unknown, location: string, signal: AbortSignal, pin?: string): unknown {
  if (error instanceof ModelgateError) return error;
  if (signal.aborted) return signal.reason;
  const status = statusOf(error);
  const code = (error as { code?: string } | undefined)?.code;
  const options = { cause: error, details: { location, status, code } };
  if (status === 404)
    return new ModelgateError('MG_SOURCE_NOT_FOUND', `no such object: ${location}`, options);
  if (status === 412) {
    return new ModelgateError(
      'MG_SOURCE_CHANGED',
      `${location} changed: expected ETag ${pin ?? '(none)'}, got a precondition failure`,
      options,
    );
  }
  if (isTimeoutError(error)) {
    return new ModelgateError('MG_SOURCE_TIMEOUT', `${location}: connect timed out`, options);
  }
  const what = status === undefined ? (code ?? String(error)) : `HTTP ${status} ${code ?? ''}`.trim();
  const transient =
    status === undefined ? transientTransport(error) : transientAnswer(status, code, retryAfterOf(error));
  return new ModelgateError('MG_SOURCE_FAILED', `${location}: expected the object, got ${what}`, {
    cause: error,
    details: { ...options.details, transient },
  });
}
