import { createHash } from 'node:crypto';
import { parentPort } from 'node:worker_threads';

/**
 * Hashes chunk buffers off the event loop. The buffer arrives by transfer
 * (no copy) and goes back by transfer with its digest, so the main thread
 * keeps ownership and can send the bytes once they verified.
 */
interface HashRequest {
  id: number;
  buffer: ArrayBuffer;
  byteOffset: number;
  byteLength: number;
}

parentPort!.on('message', (request: HashRequest) => {
  const view = new Uint8Array(request.buffer, request.byteOffset, request.byteLength);
  const digest = createHash('sha256').update(view).digest();
  const out = new ArrayBuffer(32);
  new Uint8Array(out).set(digest);
  parentPort!.postMessage({ id: request.id, buffer: request.buffer, digest: out }, [request.buffer, out]);
});
