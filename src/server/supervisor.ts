import cluster, { type Worker } from 'node:cluster';
import type { Logger } from '../telemetry/logger.ts';
import type { SupervisorMetrics, WorkerRestartReason, WorkerState } from '../telemetry/metrics.ts';
import { type BackoffPolicy, countFailures, restartDelayMs } from './restart-backoff.ts';
import type {
  PrimaryMessage,
  WorkerAnswers,
  WorkerMessage,
  WorkerQuestion,
} from './worker-protocol.types.ts';
import type { WorkerExit, WorkerStatus } from './worker-readiness.ts';

export interface SupervisorOptions {
  count: number;
  backoff: BackoffPolicy;
  metrics: SupervisorMetrics;
  logger: Logger;
  /** Milliseconds since the epoch. */
  now?: () => number;
}

/** One of the N worker places. The supervisor owns its process and its restart timer. */
interface Slot {
  readonly index: number;
  worker: Worker | undefined;
  state: WorkerState;
  restarts: number;
  failures: number;
  readyAt: number | undefined;
  startError: string | undefined;
  lastExit: WorkerExit | undefined;
  restartAt: number | undefined;
  restartTimer: NodeJS.Timeout | undefined;
  /** A SIGHUP came while this worker was starting: forward it once it is ready. */
  reloadPending: boolean;
  /** Resolves `start()`'s wait on this slot's first process: ready, or dead before that. */
  onFirstOutcome: ((ready: boolean) => void) | undefined;
}

interface PendingQuestion {
  slot: Slot;
  resolve(answer: unknown): void;
}

/** Whether the first processes came up: the primary gives up only when none did (port in use, bad config). */
export interface StartOutcome {
  ready: number;
  dataUrl: string;
}

/**
 * The primary's side of `serve --workers N`: keeps N worker processes
 * (cluster.fork of worker-main.ts) alive. A worker that dies, while starting
 * or serving, is replaced after an exponential backoff; nothing a worker does
 * rejects or throws in the primary. SIGHUP reaches workers as an IPC message,
 * and only once they are ready, so a starting worker is never signalled.
 */
export class WorkerSupervisor {
  readonly #slots: Slot[];
  readonly #pending = new Map<number, PendingQuestion>();
  readonly #options: SupervisorOptions;
  readonly #now: () => number;
  #nextQuestion = 1;
  #stopping = false;
  #dataUrl = '';

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#now = options.now ?? Date.now;
    this.#slots = Array.from({ length: options.count }, (_, i) => ({
      index: i + 1,
      worker: undefined,
      state: 'starting',
      restarts: 0,
      failures: 0,
      readyAt: undefined,
      startError: undefined,
      lastExit: undefined,
      restartAt: undefined,
      restartTimer: undefined,
      reloadPending: false,
      onFirstOutcome: undefined,
    }));
  }

  get stopping(): boolean {
    return this.#stopping;
  }

  /** Forks every worker; resolves once each has become ready or died once (then it is already in backoff). */
  async start(): Promise<StartOutcome> {
    const outcomes = await Promise.all(
      this.#slots.map(
        (slot) =>
          new Promise<boolean>((resolve) => {
            slot.onFirstOutcome = resolve;
            this.#fork(slot);
          }),
      ),
    );
    return { ready: outcomes.filter(Boolean).length, dataUrl: this.#dataUrl };
  }

  /** The primary's SIGHUP: ready workers reload now, starting ones once they are ready. */
  reload(): void {
    for (const slot of this.#slots) {
      if (slot.state === 'ready' && slot.worker) this.#send(slot.worker, { type: 'modelgate:reload' });
      else if (slot.state === 'starting') slot.reloadPending = true;
    }
  }

  /**
   * Asks every ready worker; a worker that dies or does not answer within
   * `timeoutMs` is left out of the map (keyed by slot number).
   */
  async ask<Q extends WorkerQuestion>(
    question: Q,
    timeoutMs: number,
  ): Promise<Map<number, WorkerAnswers[Q]>> {
    const ready = this.#slots.filter((slot) => slot.state === 'ready' && slot.worker);
    const answers = await Promise.all(ready.map((slot) => this.#askOne(slot, question, timeoutMs)));
    const map = new Map<number, WorkerAnswers[Q]>();
    ready.forEach((slot, i) => {
      const answer = answers[i];
      if (answer !== undefined) map.set(slot.index, answer);
    });
    return map;
  }

  status(): WorkerStatus[] {
    const now = this.#now();
    return this.#slots.map((slot) => ({
      worker: slot.index,
      pid: slot.worker?.process.pid ?? null,
      state: slot.state,
      restarts: slot.restarts,
      failures: slot.failures,
      ...(slot.lastExit ? { lastExit: slot.lastExit } : {}),
      ...(slot.state === 'backoff' && slot.restartAt !== undefined
        ? { nextStartInSeconds: Math.max(0, Math.round(slot.restartAt - now) / 1000) }
        : {}),
    }));
  }

  /**
   * Stops replacing workers, sends SIGTERM to each (they drain), and resolves
   * once all have exited. A worker still alive `forceAfterMs` later is killed.
   */
  async stop(forceAfterMs: number): Promise<void> {
    this.#stopping = true;
    const live: Worker[] = [];
    for (const slot of this.#slots) {
      clearTimeout(slot.restartTimer);
      slot.restartTimer = undefined;
      if (slot.worker) live.push(slot.worker);
    }
    const force = setTimeout(() => {
      for (const worker of live) if (!worker.isDead()) worker.process.kill('SIGKILL');
    }, forceAfterMs);
    await Promise.all(
      live.map(
        (worker) =>
          new Promise<void>((resolve) => {
            if (worker.isDead()) {
              resolve();
              return;
            }
            worker.once('exit', () => resolve());
            worker.process.kill('SIGTERM');
          }),
      ),
    );
    clearTimeout(force);
    this.#updateGauge();
  }

  #fork(slot: Slot): void {
    const worker = cluster.fork({ MODELGATE_WORKER_SLOT: String(slot.index) });
    slot.worker = worker;
    slot.state = 'starting';
    slot.readyAt = undefined;
    slot.startError = undefined;
    slot.restartAt = undefined;
    this.#updateGauge();
    const pid = worker.process.pid;
    this.#options.logger.info(
      { event: 'worker_started', worker: slot.index, pid, restarts: slot.restarts },
      `worker ${slot.index} started (pid ${pid})`,
    );
    worker.on('message', (message: WorkerMessage) => this.#onMessage(slot, worker, message));
    // An IPC write to a worker that just died fails with EPIPE; without a listener it would throw here.
    worker.on('error', (error: Error) =>
      this.#options.logger.warn({ event: 'worker_ipc_error', worker: slot.index, pid, err: String(error) }),
    );
    worker.on('exit', (code: number | null, signal: string | null) =>
      this.#onExit(slot, worker, code, signal),
    );
  }

  #onMessage(slot: Slot, worker: Worker, message: WorkerMessage): void {
    if (slot.worker !== worker) return;
    switch (message?.type) {
      case 'modelgate:booting':
        this.#options.logger.info(
          { event: 'worker_booting', worker: slot.index, pid: worker.process.pid },
          `worker ${slot.index} is loading`,
        );
        return;
      case 'modelgate:ready':
        this.#onReady(slot, worker, message.dataUrl);
        return;
      case 'modelgate:start-failed':
        slot.startError = message.error;
        return;
      case 'modelgate:answer': {
        const pending = this.#pending.get(message.id);
        if (pending?.slot === slot) pending.resolve(message.answer);
        return;
      }
      default:
        return;
    }
  }

  #onReady(slot: Slot, worker: Worker, dataUrl: string): void {
    slot.state = 'ready';
    slot.readyAt = this.#now();
    this.#dataUrl ||= dataUrl;
    this.#updateGauge();
    this.#options.logger.info(
      { event: 'worker_ready', worker: slot.index, pid: worker.process.pid, restarts: slot.restarts },
      `worker ${slot.index} is ready`,
    );
    if (slot.reloadPending) {
      slot.reloadPending = false;
      this.#send(worker, { type: 'modelgate:reload' });
    }
    slot.onFirstOutcome?.(true);
    slot.onFirstOutcome = undefined;
  }

  #onExit(slot: Slot, worker: Worker, code: number | null, signal: string | null): void {
    // Questions to the dead process will not be answered; each answer removes itself from #pending.
    for (const pending of [...this.#pending.values()]) if (pending.slot === slot) pending.resolve(undefined);
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    const pid = worker.process.pid;
    if (this.#stopping) {
      this.#options.logger.info(
        { event: 'worker_stopped', worker: slot.index, pid, code, signal },
        `worker ${slot.index} stopped`,
      );
      return;
    }
    const now = this.#now();
    const { backoff } = this.#options;
    const readyFor = slot.readyAt === undefined ? undefined : now - slot.readyAt;
    slot.failures = countFailures(slot.failures, readyFor, backoff);
    const delayMs = restartDelayMs(slot.failures, backoff);
    slot.lastExit = {
      code,
      signal,
      phase: readyFor === undefined ? 'starting' : 'serving',
      ...(slot.startError ? { error: slot.startError } : {}),
      at: new Date(now).toISOString(),
    };
    slot.state = 'backoff';
    slot.restartAt = now + delayMs;
    slot.reloadPending = false;
    this.#updateGauge();
    this.#options.logger.error(
      { event: 'worker_exit', worker: slot.index, pid, ...slot.lastExit, failures: slot.failures, delayMs },
      `worker ${slot.index} exited; replacing it in ${delayMs} ms`,
    );
    const reason = restartReason(slot.lastExit);
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      slot.restarts++;
      this.#options.metrics.workerRestarts.inc({ reason });
      this.#fork(slot);
    }, delayMs);
    slot.onFirstOutcome?.(false);
    slot.onFirstOutcome = undefined;
  }

  #askOne<Q extends WorkerQuestion>(
    slot: Slot,
    question: Q,
    timeoutMs: number,
  ): Promise<WorkerAnswers[Q] | undefined> {
    const worker = slot.worker;
    if (!worker) return Promise.resolve(undefined);
    const id = this.#nextQuestion++;
    return new Promise((resolve) => {
      const finish = (answer: unknown) => {
        clearTimeout(timer);
        this.#pending.delete(id);
        // The IPC boundary is untyped; the worker answers `question` with WorkerAnswers[Q].
        resolve(answer as WorkerAnswers[Q] | undefined);
      };
      const timer = setTimeout(() => finish(undefined), timeoutMs);
      timer.unref();
      this.#pending.set(id, { slot, resolve: finish });
      this.#send(worker, { type: 'modelgate:ask', id, question }, () => finish(undefined));
    });
  }

  /** Sends over IPC; a worker that died meanwhile makes the send fail, which is reported, never thrown. */
  #send(worker: Worker, message: PrimaryMessage, onError?: () => void): void {
    if (!worker.isConnected()) {
      onError?.();
      return;
    }
    worker.send(message, (error: Error | null) => {
      if (error) onError?.();
    });
  }

  #updateGauge(): void {
    const counts: Record<WorkerState, number> = { starting: 0, ready: 0, backoff: 0 };
    for (const slot of this.#slots) if (slot.worker || slot.state === 'backoff') counts[slot.state]++;
    for (const [state, count] of Object.entries(counts)) this.#options.metrics.workers.set({ state }, count);
  }
}

function restartReason(exit: WorkerExit): WorkerRestartReason {
  if (exit.phase === 'starting') return 'start_failed';
  return exit.signal === null ? 'exit' : 'signal';
}
