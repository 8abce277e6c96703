import type { Registry } from 'prom-client';
import type { ReadinessReport } from './admin.ts';

/** A worker's metrics as prom-client's `getMetricsAsJSON()` gives them, for `AggregatorRegistry.aggregate`. */
export type WorkerMetricsJson = Awaited<ReturnType<Registry['getMetricsAsJSON']>>;

/** What the primary asks a ready worker, and the answer each question gets. */
export interface WorkerAnswers {
  readiness: ReadinessReport;
  metrics: WorkerMetricsJson;
}
export type WorkerQuestion = keyof WorkerAnswers;

/** Primary → worker, over the cluster IPC channel. */
export type PrimaryMessage =
  | { type: 'modelgate:ask'; id: number; question: WorkerQuestion }
  /** Re-scan the catalog: the primary's SIGHUP, forwarded only to workers that are ready. */
  | { type: 'modelgate:reload' };

/** Worker → primary. */
export type WorkerMessage =
  /** The worker's code runs and its SIGHUP gate is installed; it is loading. */
  | { type: 'modelgate:booting' }
  /** Listening: the worker takes connections from now on. */
  | { type: 'modelgate:ready'; dataUrl: string }
  /** Start-up failed; the worker exits next. The reason shows in /readyz and the primary's log. */
  | { type: 'modelgate:start-failed'; error: string }
  | { type: 'modelgate:answer'; id: number; answer: WorkerAnswers[WorkerQuestion] };
