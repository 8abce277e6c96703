/** Reading prom-client metrics in tests, from the real registry objects. */
import type { Counter, Gauge } from 'prom-client';

/** The value of the series of `metric` whose labels include `labels` (0 when there is none yet). */
export async function seriesValue<T extends string>(
  metric: Counter<T> | Gauge<T>,
  labels: Record<string, string>,
): Promise<number> {
  const { values } = await metric.get();
  const found = values.find((v) =>
    Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want),
  );
  return found?.value ?? 0;
}
