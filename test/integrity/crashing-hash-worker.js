// A hash worker for fault tests: the real worker code, except that a buffer
// starting with "CRASH" ends the thread at once (as a fatal bug or an
// out-of-memory in the worker would), and one starting with "FAIL!" makes
// the real code's hash throw (it then answers with an error).
import { parentPort } from 'node:worker_threads';

parentPort.on('message', (request) => {
  const marker = Buffer.from(request.buffer, request.byteOffset, 5).toString('latin1');
  // process.exit in a worker stops only that thread, before any listener can answer.
  if (marker === 'CRASH') process.exit(70);
  if (marker === 'FAIL!') request.byteLength = -1;
});
// Registered after the listener above, so the injected faults run first.
await import('../../src/integrity/hash-worker.js');
