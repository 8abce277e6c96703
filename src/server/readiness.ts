import { opendir } from 'node:fs/promises';
import type { Catalog } from '../catalog/catalog.types.ts';
import { type Clock, systemClock } from '../clock.ts';
import type { Authenticator } from '../identity/authenticator.types.ts';
import { describeAuditEnvironments } from '../policy/environments.ts';
import type { EnvironmentPolicy } from '../policy/policy.types.ts';
import type { StoreSet } from '../stores/index.ts';
import { describeProbeFailure, type StoreKind, storeKindOf } from '../stores/store.ts';
import type { Logger } from '../telemetry/logger.ts';
import type { ReadinessReport } from './admin.ts';

/**
 * Probe results are reused this long: /readyz is polled every few seconds by
 * every kubelet and load balancer, and must answer from memory, not by
 * sending a request to each bucket per poll.
 */
const PROBE_CACHE_MS = 5000;

/** One probe (one store, or the catalog folder) gives up after this; a hung endpoint is a failed check. */
const PROBE_TIMEOUT_MS = 5000;

export interface ReadinessDeps {
  configSource: string;
  catalog: Pick<Catalog, 'isLoaded' | 'all'>;
  catalogDir: string;
  authenticator: Pick<Authenticator, 'pendingIssuers' | 'issuerKeyProblems'>;
  stores: StoreSet;
  policy: EnvironmentPolicy;
  draining(): boolean;
  logger: Logger;
  clock?: Clock;
  cacheMs?: number;
  probeTimeoutMs?: number;
}

type Check = { ok: boolean; detail?: unknown };

export interface Readiness {
  /** Runs every probe now (stores, catalog folder); logs each failed check once. */
  check(): Promise<ReadinessReport>;
  /**
   * The report from memory: live checks (catalog loaded, issuer keys, draining)
   * plus probe results at most a few seconds old; a stale result starts one
   * refresh in the background and is answered meanwhile.
   */
  report(): ReadinessReport;
}

/** The manifest sources of the loaded releases, by store kind: what each store's probe must reach. */
function sourcesByKind(catalog: Pick<Catalog, 'all'>): Map<StoreKind, string[]> {
  const byKind = new Map<StoreKind, string[]>();
  for (const release of catalog.all()) {
    for (const file of release.manifest.files) {
      for (const source of file.sources) {
        const kind = storeKindOf(source);
        if (kind === undefined) continue;
        const list = byKind.get(kind) ?? [];
        list.push(source);
        byKind.set(kind, list);
      }
    }
  }
  return byKind;
}

/** Runs one probe under a timeout; a failure or a hang becomes a failed check with its reason. */
async function probeOne(timeoutMs: number, run: (signal: AbortSignal) => Promise<void>): Promise<Check> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    await run(signal);
    return { ok: true };
  } catch (error) {
    const reason = signal.aborted ? `no answer within ${timeoutMs} ms` : describeProbeFailure(error);
    return { ok: false, detail: reason };
  }
}

/** The catalog folder exists and this process can list it. */
async function probeFolder(dir: string): Promise<void> {
  const folder = await opendir(dir).catch((error: unknown) => {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    throw new Error(`catalog.dir ${dir} is not a readable folder (${code})`);
  });
  await folder.close();
}

/**
 * What serving needs, checked rather than assumed (README "Health and
 * readiness"): each configured store reachable with its root or buckets
 * readable, the catalog folder readable and scanned, every issuer's keys
 * loaded, and the process not draining. Each failed check names its reason.
 */
export function createReadiness(deps: ReadinessDeps): Readiness {
  const clock = deps.clock ?? systemClock;
  const cacheMs = deps.cacheMs ?? PROBE_CACHE_MS;
  const timeoutMs = deps.probeTimeoutMs ?? PROBE_TIMEOUT_MS;

  let probes: Record<string, Check> | undefined;
  let probedAt = Number.NEGATIVE_INFINITY;
  let inflight: Promise<void> | undefined;
  /** What the last log said about each check, so a failure is logged when it starts, not on every probe. */
  const logged = new Map<string, boolean>();

  async function runProbes(): Promise<Record<string, Check>> {
    const sources = sourcesByKind(deps.catalog);
    const named: Array<[string, Promise<Check>]> = [
      ['catalogDir', probeOne(timeoutMs, () => probeFolder(deps.catalogDir))],
    ];
    for (const kind of deps.stores.kinds()) {
      const store = deps.stores.byKind(kind);
      if (store === undefined) continue;
      named.push([
        `store:${kind}`,
        probeOne(timeoutMs, (signal) => store.probe(sources.get(kind) ?? [], signal)),
      ]);
    }
    const results = await Promise.all(named.map(([, check]) => check));
    return Object.fromEntries(named.map(([name], i) => [name, results[i] ?? { ok: false }]));
  }

  function refresh(): Promise<void> {
    inflight ??= runProbes()
      .then((result) => {
        probes = result;
        probedAt = clock();
        logChanges(liveReport());
      })
      .finally(() => {
        inflight = undefined;
      });
    return inflight;
  }

  function logChanges(report: ReadinessReport): void {
    for (const [name, check] of Object.entries(report.checks)) {
      const before = logged.get(name);
      logged.set(name, check.ok);
      if (before === check.ok || (before === undefined && check.ok)) continue;
      if (check.ok) deps.logger.info({ event: 'readiness_recovered', check: name }, `ready: ${name} ok`);
      else
        deps.logger.warn(
          { event: 'readiness_failed', check: name, reason: check.detail },
          `not ready: ${name}: ${typeof check.detail === 'string' ? check.detail : JSON.stringify(check.detail)}`,
        );
    }
  }

  function liveReport(): ReadinessReport {
    const pending = deps.authenticator.pendingIssuers();
    const checks: Record<string, Check> = {
      config: { ok: true, detail: deps.configSource },
      catalog: { ok: deps.catalog.isLoaded(), detail: { releases: deps.catalog.all().length } },
      issuerKeys:
        pending.length === 0
          ? { ok: true }
          : { ok: false, detail: { pending, reasons: deps.authenticator.issuerKeyProblems() } },
      ...(probes ?? { probes: { ok: false, detail: 'stores and catalog folder not checked yet' } }),
      accepting: deps.draining() ? { ok: false, detail: 'draining: shutdown in progress' } : { ok: true },
    };
    return {
      ready: Object.values(checks).every((c) => c.ok),
      checks,
      auditEnvironments: describeAuditEnvironments(deps.policy),
    };
  }

  return {
    async check() {
      await refresh();
      return liveReport();
    },
    report() {
      if (clock() - probedAt >= cacheMs) refresh().catch(() => {});
      return liveReport();
    },
  };
}
