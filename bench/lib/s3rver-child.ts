/**
 * s3rver in its own process (the tests run it in process; here that would
 * put the S3 emulator on the measuring client's event loop):
 *
 *   node bench/lib/s3rver-child.ts --dir DIR --bucket NAME
 *
 * Prints one JSON line `{"port": N}` once listening on 127.0.0.1; SIGTERM stops it.
 */
import { createRequire } from 'node:module';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

interface S3rverInstance {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  httpServer?: { closeAllConnections(): void };
}

type S3rverConstructor = new (options: {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: Array<{ name: string }>;
}) => S3rverInstance;

async function main() {
  const { values } = parseArgs({ options: { dir: { type: 'string' }, bucket: { type: 'string' } } });
  if (!values.dir || !values.bucket) throw new Error('--dir and --bucket are required');
  const S3rver = createRequire(import.meta.url)('s3rver') as S3rverConstructor;
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    silent: true,
    directory: values.dir,
    configureBuckets: [{ name: values.bucket }],
  });
  const address = await server.run();
  process.stdout.write(`${JSON.stringify({ port: address.port })}\n`);
  process.once('SIGTERM', () => {
    server.httpServer?.closeAllConnections();
    server.close().finally(() => process.exit(0));
  });
}

await main();
