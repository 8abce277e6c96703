/**
 * Runs in a child process for the credential-path tests: credentials come
 * from the environment (AWS_*, GOOGLE_*, proxies), which is process-wide, so
 * each case gets a process of its own. argv[2] is JSON
 * `{ stores: StoresConfig, location: string }`; the probe stats and reads the
 * whole object through the configured store set and prints one JSON line:
 * `{ "ok": true, "size", "sha256" }` or `{ "ok": false, "code", "message" }`.
 */
import { createHash } from 'node:crypto';
import type { StoresConfig } from '../../src/config/config.types.ts';
import { isModelgateError } from '../../src/errors.ts';
import { createStores } from '../../src/stores/index.ts';

const { stores: config, location } = JSON.parse(process.argv[2] ?? '{}') as {
  stores: StoresConfig;
  location: string;
};
const stores = await createStores(config);
try {
  const store = stores.forLocation(location);
  if (store === undefined) throw new Error(`no store for ${location}`);
  const signal = AbortSignal.timeout(20_000);
  const info = await store.stat(location, signal);
  const result = await store.read(location, { start: 0, end: info.size }, { signal, pin: info.version });
  const hash = createHash('sha256');
  for await (const chunk of result.stream) hash.update(chunk as Uint8Array);
  process.stdout.write(`${JSON.stringify({ ok: true, size: info.size, sha256: hash.digest('hex') })}\n`);
} catch (error) {
  process.stdout.write(
    `${JSON.stringify({
      ok: false,
      code: isModelgateError(error) ? error.code : 'not-a-modelgate-error',
      message: String((error as Error).message),
    })}\n`,
  );
} finally {
  await stores.close();
}
