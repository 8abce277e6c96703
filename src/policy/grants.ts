import type { Principal } from '../identity/principal.types.ts';

/**
 * Compiled model globs. Globs come from configuration, so the set is bounded
 * by the config; the model names matched against them come from request URLs.
 */
const compiled = new Map<string, RegExp>();

/**
 * True when `model` matches `glob`: `*` matches any run of characters within
 * one `/`-separated segment, `**` matches across segments (`a/**\/b` also
 * matches `a/b`), and every other character, `.` included, is literal.
 */
export function matchesModelGlob(glob: string, model: string): boolean {
  let pattern = compiled.get(glob);
  if (pattern === undefined) {
    pattern = compileGlob(glob);
    compiled.set(glob, pattern);
  }
  return pattern.test(model);
}

/** True when some grant of the principal covers the model, in any environment. */
export function mayReadModel(principal: Principal, model: string): boolean {
  return principal.grants.some((grant) => grant.models.some((glob) => matchesModelGlob(glob, model)));
}

/** True when some grant of the principal covers the model in this environment. */
export function isGranted(principal: Principal, model: string, environment: string): boolean {
  return principal.grants.some(
    (grant) =>
      grant.environments.includes(environment) && grant.models.some((glob) => matchesModelGlob(glob, model)),
  );
}

function compileGlob(glob: string): RegExp {
  let source = '';
  let i = 0;
  while (i < glob.length) {
    if (glob.startsWith('**', i)) {
      // Runs of three or more stars mean the same as two; collapsing them keeps
      // the regular expression free of stacked `.*` that would backtrack badly.
      while (glob[i] === '*') i++;
      if (glob[i] === '/') {
        source += '(?:.*/)?';
        i++;
      } else {
        source += '.*';
      }
    } else if (glob[i] === '*') {
      source += '[^/]*';
      i++;
    } else {
      source += escapeRegExp(glob.charAt(i));
      i++;
    }
  }
  return new RegExp(`^${source}$`);
}

function escapeRegExp(character: string): string {
  return /[\\^$.*+?()[\]{}|]/.test(character) ? `\\${character}` : character;
}
