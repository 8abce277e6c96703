import { readFileSync } from 'node:fs';
import { dirname, isAbsolute, resolve } from 'node:path';
import { Ajv } from 'ajv';
import { parse, parseDocument } from 'yaml';
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
    super(
      `invalid configuration ${file}:\n${problems.map((p) => `  ${p.path || '(root)'}: ${p.message}`).join('\n')}`,
    );
    this.name = 'ConfigError';
    this.file = file;
    this.problems = problems;
  }
}

const ajv = new Ajv({ allErrors: true, useDefaults: true, strict: true, allowUnionTypes: true });
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

function resolvePath(base: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  return isAbsolute(value) ? value : resolve(base, value);
}

/** Makes every file path in the configuration absolute, relative to the configuration file's folder. */
function resolvePaths(config: ModelgateConfig, base: string): void {
  const tls = config.listen.tls;
  if (tls) {
    tls.cert = resolvePath(base, tls.cert)!;
    tls.key = resolvePath(base, tls.key)!;
  }
  if (config.stores.file) config.stores.file.root = resolvePath(base, config.stores.file.root)!;
  if (config.stores.gcs?.keyFilename)
    config.stores.gcs.keyFilename = resolvePath(base, config.stores.gcs.keyFilename)!;
  config.catalog.dir = resolvePath(base, config.catalog.dir)!;
  for (const issuer of config.issuers) {
    if (issuer.jwksFile) issuer.jwksFile = resolvePath(base, issuer.jwksFile)!;
  }
  for (const signer of config.signers) signer.jwksFile = resolvePath(base, signer.jwksFile)!;
  if (config.breakGlass) config.breakGlass.jwksFile = resolvePath(base, config.breakGlass.jwksFile)!;
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
  if (problems.length > 0) throw new ConfigError(source, dedupeProblems(problems));
  const config = raw as unknown as ModelgateConfig;
  config.source = source;
  resolvePaths(config, dirname(source));
  const semantic = checkConfigSemantics(config);
  if (semantic.length > 0) throw new ConfigError(source, semantic);
  return config;
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
