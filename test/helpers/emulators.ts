/**
 * Real object-store emulators on 127.0.0.1 for tests: Azurite's blob service
 * (a child process on Node 24) and s3rver (in process), each on a free port,
 * each with its data in memory or a temp folder removed on stop, plus small
 * seeding helpers that talk to them through the real SDKs.
 *
 * ```ts
 * const s3 = await startS3rver({ buckets: ['models'] });
 * await s3.putObject('models', 'a/b.bin', bytes);
 * after(() => s3.stop());
 * ```
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:http';
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);

/** Azurite's well-known development account (public, documented by Microsoft; not a secret). */
export const AZURITE_ACCOUNT = 'devstoreaccount1';
export const AZURITE_ACCOUNT_KEY =
  'Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==';

export interface AzuriteEmulator {
  /** `http://127.0.0.1:<port>/devstoreaccount1`: the account's blob endpoint (path style). */
  readonly endpoint: string;
  readonly port: number;
  readonly account: string;
  readonly accountKey: string;
  readonly connectionString: string;
  /** Creates the container if needed and uploads the blob; returns its ETag. */
  putObject(container: string, blob: string, data: Uint8Array): Promise<string>;
  deleteObject(container: string, blob: string): Promise<void>;
  stop(): Promise<void>;
}

export interface S3rverEmulator {
  /** `http://127.0.0.1:<port>`: use with `forcePathStyle: true`. */
  readonly endpoint: string;
  readonly port: number;
  /** Dummy credentials s3rver accepts. */
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  /** Uploads an object; returns its ETag. */
  putObject(bucket: string, key: string, data: Uint8Array): Promise<string>;
  deleteObject(bucket: string, key: string): Promise<void>;
  stop(): Promise<void>;
}

/** Starts Azurite's blob service as a child process on 127.0.0.1, port 0, in memory. */
export async function startAzurite(): Promise<AzuriteEmulator> {
  const entry = join(
    fileURLToPath(new URL('../../node_modules/azurite/dist/src/blob/main.js', import.meta.url)),
  );
  // In memory (no --location: Azurite refuses both); the temp cwd catches anything it still writes.
  const location = await mkdtemp(join(tmpdir(), 'modelgate-azurite-'));
  const child = spawn(
    process.execPath,
    [
      entry,
      '--blobHost',
      '127.0.0.1',
      '--blobPort',
      '0',
      '--skipApiVersionCheck',
      '--inMemoryPersistence',
      // In-memory extents are capped: tests store a few MiB at most.
      '--extentMemoryLimit',
      '256',
      '--silent',
      '--loose',
      '--disableTelemetry',
    ],
    { cwd: location, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  // A test process that dies without stop() must not leave Azurite running.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  let port: number;
  try {
    port = await waitForListening(child);
  } catch (error) {
    child.kill('SIGKILL');
    process.off('exit', killOnExit);
    await rm(location, { recursive: true, force: true });
    throw error;
  }
  const endpoint = `http://127.0.0.1:${port}/${AZURITE_ACCOUNT}`;
  const connectionString =
    `DefaultEndpointsProtocol=http;AccountName=${AZURITE_ACCOUNT};` +
    `AccountKey=${AZURITE_ACCOUNT_KEY};BlobEndpoint=${endpoint};`;

  const { BlobServiceClient } = await import('@azure/storage-blob');
  const client = BlobServiceClient.fromConnectionString(connectionString, { retryOptions: { maxTries: 1 } });
  const created = new Set<string>();
  let stopped = false;

  return {
    endpoint,
    port,
    account: AZURITE_ACCOUNT,
    accountKey: AZURITE_ACCOUNT_KEY,
    connectionString,
    async putObject(container, blob, data) {
      const containerClient = client.getContainerClient(container);
      if (!created.has(container)) {
        await containerClient.createIfNotExists();
        created.add(container);
      }
      const result = await containerClient.getBlockBlobClient(blob).uploadData(data);
      return result.etag ?? '';
    },
    async deleteObject(container, blob) {
      await client.getContainerClient(container).getBlockBlobClient(blob).deleteIfExists();
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      const exited = new Promise<void>((resolve) => {
        if (child.exitCode !== null || child.signalCode !== null) resolve();
        else child.once('exit', () => resolve());
      });
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
      await exited;
      clearTimeout(timer);
      process.off('exit', killOnExit);
      await rm(location, { recursive: true, force: true });
    },
  };
}

/** Reads Azurite's "successfully listens on http://127.0.0.1:PORT" line. */
function waitForListening(child: ChildProcess): Promise<number> {
  return new Promise((resolve, reject) => {
    let output = '';
    const timer = setTimeout(() => fail(new Error(`azurite did not start in 20 s:\n${output}`)), 20_000);
    const onData = (chunk: Buffer) => {
      output += chunk.toString('utf8');
      const match = /listens on https?:\/\/[^:]+:(\d+)/.exec(output);
      if (match !== null) {
        cleanup();
        // Keep draining the pipes so a chatty child never blocks on a full pipe.
        child.stdout?.resume();
        child.stderr?.resume();
        resolve(Number(match[1]));
      }
    };
    const onExit = (code: number | null) => fail(new Error(`azurite exited with ${code}:\n${output}`));
    const fail = (error: Error) => {
      cleanup();
      reject(error);
    };
    const cleanup = () => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: Server;
}

type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
}) => S3rverInstance;

/** Starts s3rver in process on 127.0.0.1, port 0, with its files in a temp folder. */
export async function startS3rver(options: { buckets?: string[] } = {}): Promise<S3rverEmulator> {
  const S3rver = require('s3rver') as S3rverConstructor;
  const directory = await mkdtemp(join(tmpdir(), 'modelgate-s3rver-'));
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory,
    configureBuckets: (options.buckets ?? ['models']).map((name) => ({ name })),
  });
  const address = await server.run();
  const endpoint = `http://127.0.0.1:${address.port}`;
  const credentials = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' };

  const { S3Client, PutObjectCommand, DeleteObjectCommand } = await import('@aws-sdk/client-s3');
  const client = new S3Client({
    region: 'us-east-1',
    endpoint,
    forcePathStyle: true,
    credentials,
    requestChecksumCalculation: 'WHEN_REQUIRED',
    responseChecksumValidation: 'WHEN_REQUIRED',
  });
  let stopped = false;

  return {
    endpoint,
    port: address.port,
    credentials,
    async putObject(bucket, key, data) {
      const result = await client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: data }));
      return result.ETag ?? '';
    },
    async deleteObject(bucket, key) {
      await client.send(new DeleteObjectCommand({ Bucket: bucket, Key: key }));
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      client.destroy();
      server.httpServer?.closeAllConnections();
      await server.close();
      await rm(directory, { recursive: true, force: true });
    },
  };
}
