import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { createCatalog } from '../catalog/catalog.ts';
import { ConfigError, loadConfig } from '../config/load.ts';
import { buildReleasePolicy } from '../policy/build-policy.ts';
import { createEnvironmentPolicy } from '../policy/environments.ts';
import { formatPolicyReport } from '../policy/report.ts';
import { createLogger } from '../telemetry/logger.ts';
import { createMetrics } from '../telemetry/metrics.ts';
import { toSignerSpec } from '../trust/signer-config.ts';
import { type Command, defineCommand, EXIT } from './command.types.ts';
import type { CommandOutput } from './keygen.ts';

const HELP = `Usage: modelgate report --config FILE [--at RFC3339] [--fail-on-inadmissible]

Prints, from the configuration and its catalog alone (no server, no network),
per environment: how many releases there are and how many are admissible
now, what each inadmissible release lacks (signer, attestations, lineage),
and every policy exception with its owner, what it waives and its days left.
The decision is the same one the proxy and the admission webhook make.

Options:
  --config FILE            the proxy's YAML configuration                          (required)
  --at INSTANT             decide as of this RFC 3339 instant instead of now (e.g. the
                           day an exception expires)
  --fail-on-inadmissible   exit 3 when some release is not admissible (for CI gates)
  -h, --help               show this help

Exit codes: 0 report printed, 1 failure (unreadable catalog or keys), 2 usage or
invalid configuration, 3 with --fail-on-inadmissible: some release is not admissible.
`;

/** `--config`, `--at`, `--fail-on-inadmissible`, `--help`. */
function parseReportArgs(args: string[]) {
  return parseArgs({
    args,
    options: {
      config: { type: 'string' },
      at: { type: 'string' },
      'fail-on-inadmissible': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
  }).values;
}

export function createReportCommand(output: CommandOutput = process): Command {
  return defineCommand({
    name: 'report',
    summary: 'per environment: admissible releases, what the others lack, exceptions and their expiry',
    help: HELP,
    output,
    parse: parseReportArgs,
    async run(values, fail) {
      if (values.config === undefined) return fail(EXIT.usage, '--config FILE is required');
      const now = values.at === undefined ? Date.now() : Date.parse(values.at);
      if (Number.isNaN(now)) return fail(EXIT.usage, `--at: expected an RFC 3339 instant, got ${values.at}`);
      let config: ReturnType<typeof loadConfig>;
      try {
        config = loadConfig(values.config);
      } catch (error) {
        if (error instanceof ConfigError) return fail(EXIT.usage, error.message);
        throw error;
      }
      const clock = () => now;
      const metrics = createMetrics({ defaultMetrics: false });
      // Catalog rejections are part of the answer: they go to standard error, one JSON line each.
      const logger = createLogger({
        level: 'warn',
        destination: { write: (line: string) => output.stderr.write(line) },
      });
      const catalog = createCatalog({
        config: { ...config.catalog, pollSeconds: 0 },
        signers: config.signers.map(toSignerSpec),
        upstreamSigners: config.upstreamSigners.map(toSignerSpec),
        attestors: config.attestors.map(toSignerSpec),
        baseDir: dirname(config.source),
        logger,
        metrics,
        clock,
      });
      try {
        await catalog.start();
      } catch (error) {
        return fail(EXIT.failure, (error as Error).message);
      } finally {
        catalog.stop();
      }
      const environments = createEnvironmentPolicy({ environments: config.environments, clock });
      const { policy } = buildReleasePolicy(config, environments, catalog);
      const lines = formatPolicyReport({
        policy,
        environments: Object.keys(config.environments),
        releases: catalog.all(),
        exceptions: config.exceptions,
        now,
      });
      output.stdout.write(`${lines.join('\n')}\n`);
      const inadmissible = lines.some((line) => line.endsWith(': not admissible'));
      return values['fail-on-inadmissible'] && inadmissible ? 3 : EXIT.ok;
    },
  });
}

export const reportCommand: Command = createReportCommand();
