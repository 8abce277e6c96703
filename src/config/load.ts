import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { parse, parseDocument } from 'yaml';
import { compileGates, exceptionConfigProblems } from '../policy/build-policy.ts';
import { dedupeProblems, describeAjvError, formatPath } from '../schema-problems.ts';
import type { ModelgateConfig } from './config.types.ts';
import { configSchema } from './schema.ts';
import { checkConfigSemantics } from './semantics.ts';

/** One problem in a configuration file, located by a path like `issuers[1].audiences`. */
export interface ConfigProblem {
  path: string;
  message: string;
}

/** Thrown when a configuration file is invalid; lists every problem found. */
export class ConfigError extends Error {
  readonly file: string;
  readonly problems: ConfigProblem[];

  constructor(file: string, problems: ConfigProblem[]) {
    // Each line names the file and the field, so it stands alone when copied into a ticket or grepped from logs.
    super(
      `invalid configuration ${file} (${problems.length} ${problems.length === 1 ? 'problem' : 'problems'}):\n${problems.map((p) => `  ${file}: ${p.path || '(root)'}: ${p.message}`).join('\n')}`,
    );
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}

// verbose: errors carry their parent schema, which lists the known keys for "did you mean".
const ajv = new Ajv({
  allErrors: true,
  useDefaults: true,
  strict: true,
  allowUnionTypes: true,
  verbose: true,
});
const validate = ajv.compile(configSchema);

/** Replaces `${NAME}` (or `${NAME:-default}`) in every string value; an unset variable without default is a problem at that path. */
function substituteEnvironment(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path: (string | number)[],
  problems: ConfigProblem[],
): unknown {
  if (typeof value === 'string') {
    // A value that is exactly one placeholder takes the replacement's YAML type (`port: ${PORT:-8080}` is a number).
    const whole = /^\$\{[A-Za-z_][A-Za-z0-9_]*(?::-[^}]*)?\}$/.test(value);
    const replaced = value.replace(
      /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g,
      (_match, name: string, fallback?: string) => {
        const replacement = env[name] === undefined || env[name] === '' ? fallback : env[name];
        if (replacement === undefined) {
          problems.push({ path: formatPath(path), message: `environment variable ${name} is not set` });
          return '';
        }
        return replacement;
      },
    );
    if (whole && /^(-?\d+(\.\d+)?|true|false)$/.test(replaced)) return parse(replaced) as unknown;
    return replaced;
  }
  if (Array.isArray(value))
    return value.map((item, i) => substituteEnvironment(item, env, [...path, i], problems));
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [key, item] of Object.entries(value))
      out[key] = substituteEnvironment(item, env, [...path, key], problems);
    return out;
  }
  return value;
}

function resolvePath(base: string, value: string): string {
  return isAbsolute(value) ? value : resolve(base, value);
}

/** A signer's key files (any kind) made absolute. */
function resolveKeySource(signer: ModelgateConfig['attestors'][number], base: string): void {
  if (signer.jwksFile !== undefined) signer.jwksFile = resolve(base, signer.jwksFile);
  if (signer.publicKeyFile !== undefined) signer.publicKeyFile = resolve(base, signer.publicKeyFile);
  if (signer.certificate !== undefined) signer.certificate.caFile = resolve(base, signer.certificate.caFile);
  if (signer.sigstore !== undefined) signer.sigstore.trustedRoot = resolve(base, signer.sigstore.trustedRoot);
}

/** Makes every file path in the configuration absolute, relative to the configuration file's folder. */
function resolvePaths(config: ModelgateConfig, base: string): void {
  const tls = config.listen.tls;
  if (tls) {
    tls.cert = resolvePath(base, tls.cert);
    tls.key = resolvePath(base, tls.key);
  }
  if (config.stores.file) config.stores.file.root = resolvePath(base, config.stores.file.root);
  if (config.stores.gcs?.keyFilename)
    config.stores.gcs.keyFilename = resolvePath(base, config.stores.gcs.keyFilename);
  config.catalog.dir = resolvePath(base, config.catalog.dir);
  if (config.cache) config.cache.dir = resolvePath(base, config.cache.dir);
  for (const issuer of config.issuers) {
    if (issuer.jwksFile) issuer.jwksFile = resolvePath(base, issuer.jwksFile);
  }
  for (const signer of [...config.signers, ...config.upstreamSigners, ...config.attestors]) {
    resolveKeySource(signer, base);
  }
  if (config.breakGlass) config.breakGlass.jwksFile = resolvePath(base, config.breakGlass.jwksFile);
}

/**
 * Parses and validates configuration text. Throws ConfigError listing every
 * problem (YAML syntax, environment variables, schema, cross-references).
 */
export function parseConfig(
  text: string,
  file: string,
  env: NodeJS.ProcessEnv = process.env,
): ModelgateConfig {
  const source = resolve(file);
  const document = parseDocument(text, { uniqueKeys: true });
  if (document.errors.length > 0) {
    throw new ConfigError(
      source,
      document.errors.map((e) => ({
        path: `line ${e.linePos?.[0]?.line ?? '?'}`,
        message: e.message.split('\n')[0] ?? '',
      })),
    );
  }
  const problems: ConfigProblem[] = [];
  const raw = substituteEnvironment(document.toJS() ?? {}, env, [], problems);
  if (!validate(raw)) {
    for (const error of validate.errors ?? []) {
      // anyOf reports each branch; the summary line is enough.
      if (error.schemaPath.includes('/anyOf/')) continue;
      problems.push(describeAjvError(error));
    }
  }
  // Cross-references are checked even when the schema failed, so one run lists every problem.
  problems.push(...crossReferenceProblems(raw));
  if (problems.length > 0) throw new ConfigError(source, dedupeProblems(problems));
  const config = raw as unknown as ModelgateConfig;
  config.source = source;
  resolvePaths(config, dirname(source));
  return config;
}

/**
 * The semantic checks, on data that may not have passed the schema: they skip
 * what is missing or mistyped (the schema already reported it), and a shape
 * too broken to walk yields no further problems rather than a crash.
 */
function crossReferenceProblems(raw: unknown): ConfigProblem[] {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) return [];
  const shaped = raw as Partial<Record<keyof ModelgateConfig, unknown>>;
  const listOrEmpty = (value: unknown) => (Array.isArray(value) ? value.filter(isRecord) : []);
  const candidate = {
    ...shaped,
    issuers: listOrEmpty(shaped.issuers),
    serviceAccounts: listOrEmpty(shaped.serviceAccounts),
    signers: listOrEmpty(shaped.signers),
    environments: isRecord(shaped.environments) ? shaped.environments : {},
  } as unknown as ModelgateConfig;
  let problems: ConfigProblem[] = [];
  try {
    problems = checkConfigSemantics(candidate);
  } catch {
    // A shape too broken to walk: the schema problems already say why.
  }
  return [...problems, ...policyProblems(shaped)];
}

/** Attestation conditions, attestor references and the exception register (docs/attestations.md). */
function policyProblems(shaped: Partial<Record<keyof ModelgateConfig, unknown>>): ConfigProblem[] {
  const policy = {
    environments: isRecord(shaped.environments) ? shaped.environments : {},
    attestors: Array.isArray(shaped.attestors) ? shaped.attestors.filter(isRecord) : [],
    exceptions: Array.isArray(shaped.exceptions) ? shaped.exceptions.filter(isRecord) : [],
    exceptionMaxDays: typeof shaped.exceptionMaxDays === 'number' ? shaped.exceptionMaxDays : 30,
  } as unknown as Parameters<typeof compileGates>[0];
  const problems: ConfigProblem[] = [];
  try {
    problems.push(...compileGates(policy).problems);
  } catch {
    // Malformed requiredAttestations: reported by the schema.
  }
  try {
    problems.push(...exceptionConfigProblems(policy));
  } catch {
    // Malformed exceptions: reported by the schema.
  }
  return problems;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** Reads, parses and validates a configuration file. */
export function loadConfig(file: string, env: NodeJS.ProcessEnv = process.env): ModelgateConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(resolve(file), [
      { path: '', message: `cannot read file: ${(error as Error).message}` },
    ]);
  }
  return parseConfig(text, file, env);
}
