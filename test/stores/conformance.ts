/**
 * The one conformance suite every store runs (file, S3, GCS, Azure), each
 * against its real server: the behaviour the integrity engine relies on,
 * written once. A store test supplies a fixture that seeds, overwrites and
 * removes objects out of band (as an operator or a pipeline would).
 *
 * ```ts
 * runStoreConformance('s3 (s3rver)', async () => ({ store, put, overwrite, remove, teardown }));
 * ```
 */
import assert from 'node:assert/strict';
import { randomBytes, randomUUID } from 'node:crypto';
import type { Readable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { isModelgateError } from '../../src/errors.ts';
import type { ReadResult, Store } from '../../src/stores/store.ts';
import type { FaultProxy } from '../helpers/fault-proxy.ts';

export interface StoreFixture {
  store: Store;
  /** Creates (or replaces) an object under a fresh key; returns its location. */
  put(key: string, bytes: Uint8Array): Promise<string>;
  /** Replaces the object at a location with other bytes (a new version). */
  overwrite(location: string, bytes: Uint8Array): Promise<void>;
  remove(location: string): Promise<void>;
  teardown(): Promise<void>;
  /** The fault proxy the store talks through, when it has one: lets the suite watch its sockets. */
  proxy?: FaultProxy;
  /**
   * Open OS handles (file descriptors) on the object at a location, for stores
   * without sockets to watch (the file store): lets the suite see handles close.
   */
  openHandles?(location: string): Promise<number>;
  /** Locations of this store's scheme that are malformed or leave its scope. */
  malformedLocations?: string[];
}

const MiB = 1024 * 1024;

export function runStoreConformance(name: string, setup: () => Promise<StoreFixture>): void {
  describe(`${name} store conformance`, () => {
    let fixture: StoreFixture;
    const signal = () => AbortSignal.timeout(20_000);
    const key = (suffix: string) => `conformance/${randomUUID()}/${suffix}`;

    before(async () => {
      fixture = await setup();
    });
    after(async () => {
      await fixture?.teardown();
    });

    describe('when an object exists', () => {
      const bytes = randomBytes(100_000);
      let location: string;
      before(async () => {
        location = await fixture.put(key('weights.bin'), bytes);
      });

      it('stats its size and a version', async () => {
        const info = await fixture.store.stat(location, signal());
        assert.equal(info.size, bytes.length);
        assert.equal(typeof info.version, 'string');
        assert.ok(info.version.length > 0);
      });

      it('reads the whole object with the same version and size as stat', async () => {
        const info = await fixture.store.stat(location, signal());
        const result = await fixture.store.read(
          location,
          { start: 0, end: bytes.length },
          { signal: signal() },
        );
        assert.equal(result.version, info.version);
        assert.equal(result.size, bytes.length);
        assert.deepEqual(await collect(result.stream), bytes);
      });

      for (const [label, start, end] of [
        ['the start', 0, 100],
        ['the middle', 1000, 5000],
        ['the end', 100_000 - 100, 100_000],
        ['one byte', 4242, 4243],
      ] as const) {
        it(`reads a range at ${label}`, async () => {
          const result = await fixture.store.read(location, { start, end }, { signal: signal() });
          assert.equal(result.size, bytes.length);
          assert.deepEqual(await collect(result.stream), bytes.subarray(start, end));
        });
      }

      it('ends the stream early for a range that runs past the end, with the real size', async () => {
        const result = await fixture.store.read(
          location,
          { start: bytes.length - 50, end: bytes.length + 50 },
          { signal: signal() },
        );
        assert.equal(result.size, bytes.length);
        assert.deepEqual(await collect(result.stream), bytes.subarray(bytes.length - 50));
      });

      for (const [label, start] of [
        ['at the end', 100_000],
        ['past the end', 100_000 + 4096],
      ] as const) {
        it(`answers an empty stream with the real size for a range starting ${label}`, async () => {
          const result = await fixture.store.read(location, { start, end: start + 10 }, { signal: signal() });
          assert.equal(result.size, bytes.length);
          assert.equal((await collect(result.stream)).length, 0);
        });
      }

      it('reads with a pin that still matches', async () => {
        const first = await fixture.store.read(location, { start: 0, end: 10 }, { signal: signal() });
        await collect(first.stream);
        const second = await fixture.store.read(
          location,
          { start: 10, end: 20 },
          { signal: signal(), pin: first.version },
        );
        assert.equal(second.version, first.version);
        assert.deepEqual(await collect(second.stream), bytes.subarray(10, 20));
      });

      it('refuses a signal that is already aborted', async () => {
        const controller = new AbortController();
        controller.abort();
        await assert.rejects(
          fixture.store.read(location, { start: 0, end: 10 }, { signal: controller.signal }),
          (error: Error) => error.name === 'AbortError',
        );
      });
    });

    describe('when an object is empty', () => {
      it('stats size 0 and reads an empty stream', async () => {
        const location = await fixture.put(key('empty.bin'), new Uint8Array(0));
        const info = await fixture.store.stat(location, signal());
        assert.equal(info.size, 0);
        const result = await fixture.store.read(location, { start: 0, end: 10 }, { signal: signal() });
        assert.equal(result.size, 0);
        assert.equal(result.version, info.version);
        assert.equal((await collect(result.stream)).length, 0);
      });
    });

    describe('when the object does not exist', () => {
      it('fails stat with MG_SOURCE_NOT_FOUND', async () => {
        const location = await missingLocation(fixture, key('missing.bin'));
        await assert.rejects(fixture.store.stat(location, signal()), code('MG_SOURCE_NOT_FOUND'));
      });

      it('fails read with MG_SOURCE_NOT_FOUND', async () => {
        const location = await missingLocation(fixture, key('missing.bin'));
        await assert.rejects(
          fixture.store.read(location, { start: 0, end: 10 }, { signal: signal() }),
          code('MG_SOURCE_NOT_FOUND'),
        );
      });
    });

    describe('when a location is malformed or leaves the store scope', () => {
      it('fails with MG_SOURCE_FAILED before any request', async () => {
        const locations = fixture.malformedLocations ?? [];
        assert.ok(locations.length > 0, 'the fixture lists malformed locations');
        for (const location of locations) {
          await assert.rejects(
            fixture.store.read(location, { start: 0, end: 10 }, { signal: signal() }),
            code('MG_SOURCE_FAILED'),
            location,
          );
          await assert.rejects(fixture.store.stat(location, signal()), code('MG_SOURCE_FAILED'), location);
        }
      });
    });

    describe('when the object is overwritten between two reads', () => {
      it('fails the pinned read with MG_SOURCE_CHANGED, and an unpinned read sees the new version', async () => {
        const original = randomBytes(20_000);
        const replacement = randomBytes(30_000);
        const location = await fixture.put(key('model.bin'), original);
        const first = await fixture.store.read(location, { start: 0, end: 10_000 }, { signal: signal() });
        assert.deepEqual(await collect(first.stream), original.subarray(0, 10_000));

        await fixture.overwrite(location, replacement);

        await assert.rejects(
          fixture.store.read(
            location,
            { start: 10_000, end: 20_000 },
            { signal: signal(), pin: first.version },
          ),
          code('MG_SOURCE_CHANGED'),
        );
        const fresh = await fixture.store.read(location, { start: 0, end: 30_000 }, { signal: signal() });
        assert.notEqual(fresh.version, first.version);
        assert.equal(fresh.size, replacement.length);
        assert.deepEqual(await collect(fresh.stream), replacement);
      });

      it('fails a pinned read of a range past the new end with MG_SOURCE_CHANGED too', async () => {
        const location = await fixture.put(key('shrinks.bin'), randomBytes(20_000));
        const first = await fixture.store.read(location, { start: 0, end: 10 }, { signal: signal() });
        await collect(first.stream);
        await fixture.overwrite(location, randomBytes(1000));
        await assert.rejects(
          fixture.store.read(
            location,
            { start: 15_000, end: 20_000 },
            { signal: signal(), pin: first.version },
          ),
          code('MG_SOURCE_CHANGED'),
        );
      });
    });

    describe('when the object is deleted between two reads', () => {
      it('fails the pinned read with MG_SOURCE_NOT_FOUND', async () => {
        const location = await fixture.put(key('gone.bin'), randomBytes(5000));
        const first = await fixture.store.read(location, { start: 0, end: 100 }, { signal: signal() });
        await collect(first.stream);
        await fixture.remove(location);
        await assert.rejects(
          fixture.store.read(location, { start: 100, end: 200 }, { signal: signal(), pin: first.version }),
          code('MG_SOURCE_NOT_FOUND'),
        );
      });
    });

    describe('when the caller aborts mid-stream', () => {
      it('destroys the stream promptly and closes its connection or file handle', async () => {
        const bytes = randomBytes(8 * MiB);
        const location = await fixture.put(key('large.bin'), bytes);
        const before = snapshot(fixture.proxy);
        const controller = new AbortController();
        const result = await fixture.store.read(
          location,
          { start: 0, end: bytes.length },
          { signal: controller.signal },
        );
        // A slow consumer: take one piece, then stop reading (backpressure holds the rest).
        const first = await firstChunk(result.stream);
        assert.deepEqual(first, bytes.subarray(0, first.length));
        const used = carriers(fixture.proxy, before);
        if (fixture.proxy !== undefined) assert.ok(used.length > 0, 'the read went through the proxy');
        // Without a proxy the fixture must count the store's handles: an empty check proves nothing.
        const handles = fixture.openHandles?.bind(fixture);
        assert.ok(
          fixture.proxy !== undefined || handles !== undefined,
          'the fixture can watch the connections or file handles the read uses',
        );
        if (handles !== undefined) assert.ok((await handles(location)) > 0, 'the read holds a handle open');

        const closed = new Promise<void>((resolve) => result.stream.once('close', () => resolve()));
        const abortedAt = performance.now();
        controller.abort();
        await withTimeout(closed, 1000, 'the stream closes within 1 s of the abort');
        assert.ok(result.stream.destroyed);
        assert.ok(performance.now() - abortedAt < 1000);
        for (const connection of used) {
          await waitFor(() => !connection.open, 2000, `connection ${connection.id} closes after the abort`);
        }
        if (handles !== undefined) {
          const deadline = performance.now() + 2000;
          while ((await handles(location)) > 0 && performance.now() < deadline) {
            await new Promise((resolve) => setTimeout(resolve, 10));
          }
          assert.equal(await handles(location), 0, 'the file handle closes after the abort');
        }
      });

      it('still serves reads after an abort', async () => {
        const bytes = randomBytes(64 * 1024);
        const location = await fixture.put(key('after-abort.bin'), bytes);
        const result = await fixture.store.read(
          location,
          { start: 0, end: bytes.length },
          { signal: signal() },
        );
        assert.deepEqual(await collect(result.stream), bytes);
      });
    });

    describe('when a large object is read in ranges', () => {
      it('reassembles 8 MiB from 1 MiB ranges, four in flight, all pinned to the first version', async () => {
        const bytes = randomBytes(8 * MiB);
        const location = await fixture.put(key('chunked.bin'), bytes);
        const info = await fixture.store.stat(location, signal());
        const pieces: Buffer[] = [];
        for (let batch = 0; batch < 8; batch += 4) {
          const reads: Promise<ReadResult>[] = [];
          for (let i = batch; i < batch + 4; i++) {
            reads.push(
              fixture.store.read(
                location,
                { start: i * MiB, end: (i + 1) * MiB },
                { signal: signal(), pin: info.version },
              ),
            );
          }
          for (const result of await Promise.all(reads)) {
            assert.equal(result.size, bytes.length);
            pieces.push(await collect(result.stream));
          }
        }
        assert.ok(Buffer.concat(pieces).equals(bytes), 'the ranges reassemble the original bytes');
      });
    });
  });
}

/** A location for a key that was never written (written and removed for stores that need the shape). */
async function missingLocation(fixture: StoreFixture, key: string): Promise<string> {
  const location = await fixture.put(key, new Uint8Array([1]));
  await fixture.remove(location);
  return location;
}

export function code(expected: string) {
  return (error: unknown) => {
    assert.ok(isModelgateError(error), `expected a ModelgateError ${expected}, got ${String(error)}`);
    assert.equal(error.code, expected, error.message);
    return true;
  };
}

export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.from(chunk as Uint8Array));
  return Buffer.concat(chunks);
}

function firstChunk(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onReadable = () => {
      const chunk = stream.read() as Buffer | null;
      if (chunk === null) return;
      stream.off('readable', onReadable);
      stream.off('error', reject);
      resolve(Buffer.from(chunk));
    };
    stream.on('readable', onReadable);
    stream.once('error', reject);
  });
}

function snapshot(proxy: FaultProxy | undefined): Map<number, number> {
  return new Map((proxy?.connections() ?? []).map((c) => [c.id, c.bytesDown]));
}

/** Connections that carried response bytes since the snapshot. */
function carriers(proxy: FaultProxy | undefined, before: Map<number, number>) {
  return (proxy?.connections() ?? []).filter((c) => c.bytesDown > (before.get(c.id) ?? 0));
}

async function waitFor(condition: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = performance.now() + ms;
  while (!condition()) {
    if (performance.now() > deadline) assert.fail(`timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out: ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
