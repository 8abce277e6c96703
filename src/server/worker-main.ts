import { holdSignal } from './signal-gate.ts';
import type { WorkerMessage } from './worker-protocol.types.ts';

// Entry point of a worker process of `serve --workers N` (cluster.setupPrimary's `exec`).
// SIGHUP's default action terminates a process, and ESM evaluates every static import before a
// module's body, so the gate comes first and everything else is imported after it. What remains
// unguarded is Node's own bootstrap before this line; the primary never signals a worker (it
// forwards reloads over IPC to ready workers), so only a SIGHUP sent to the worker's pid or process
// group from outside can land there, and the supervisor replaces a worker killed that way.
const hup = holdSignal('SIGHUP');
process.send?.({ type: 'modelgate:booting' } satisfies WorkerMessage);

// The primary is gone (it crashed or was killed): exit at once and free the port, as the primary's
// supervisor (Kubernetes) restarts the whole process tree. Installed before start-up, because a
// worker that is starting would otherwise wait forever for the primary to answer its listen().
const onPrimaryGone = () => {
  process.stderr.write('modelgate worker: primary process exited; worker stopping\n');
  process.exit(1);
};
process.once('disconnect', onPrimaryGone);

try {
  const { runWorker } = await import('./worker.ts');
  const code = await runWorker(process.argv.slice(2), hup);
  process.off('disconnect', onPrimaryGone);
  process.exitCode = code;
  // The IPC channel keeps the event loop alive: close it so the worker exits as soon as it has
  // drained (the primary waits for that), and only then, as a last resort, force the exit.
  if (process.connected) process.disconnect();
  setTimeout(() => process.exit(code), 2000).unref();
} catch (error) {
  process.stderr.write(
    `modelgate worker: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`,
  );
  process.exit(1);
}
