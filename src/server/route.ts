import { isValidFilePath, isValidModelName, isValidVersion } from '../catalog/manifest.ts';
import type { ReleaseRef } from '../catalog/release.types.ts';
import { ModelgateError } from '../errors.ts';
import { isSha256Hex } from '../integrity/digest.ts';
import type { Route as RouteLabel } from '../telemetry/metrics.ts';

export type ApiRoute =
  | { kind: 'manifest'; model: string; ref: ReleaseRef }
  | { kind: 'file'; model: string; ref: ReleaseRef; path: string }
  | { kind: 'prefetch'; model: string; ref: ReleaseRef }
  | { kind: 'blob'; model: string; digest: string };

const PREFIX = '/v1/models/';

function decodeSegment(raw: string, code: 'MG_BAD_REFERENCE' | 'MG_BAD_PATH'): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ModelgateError(code, 'malformed percent-encoding in the URL');
  }
}

function parseRef(raw: string): ReleaseRef {
  const value = decodeSegment(raw, 'MG_BAD_REFERENCE');
  if (value.startsWith('sha256:')) {
    if (!isSha256Hex(value.slice(7))) {
      throw new ModelgateError(
        'MG_BAD_REFERENCE',
        'a release digest is sha256: followed by 64 lowercase hex digits',
      );
    }
    return { kind: 'digest', digest: value };
  }
  if (!isValidVersion(value)) throw new ModelgateError('MG_BAD_REFERENCE', 'malformed release version');
  return { kind: 'version', version: value };
}

/**
 * Parses the raw request target (attacker-controlled) without URL
 * normalisation: `new URL()` would silently resolve `..` and `%2e%2e`, and a
 * traversal attempt must be refused, not rewritten. Each segment is decoded
 * on its own, so `%2f` inside a file path segment is refused rather than
 * becoming a separator. The model name may contain `/`, encoded or not.
 */
export function parseRoute(rawTarget: string): ApiRoute {
  const end = rawTarget.search(/[?#]/);
  const path = end === -1 ? rawTarget : rawTarget.slice(0, end);
  if (!path.startsWith(PREFIX)) throw new ModelgateError('MG_ROUTE_NOT_FOUND', 'no such endpoint');
  const segments = path.slice(PREFIX.length).split('/');
  const split = segments.findIndex((s, i) => i > 0 && (s === 'releases' || s === 'blobs'));
  if (split === -1) throw new ModelgateError('MG_ROUTE_NOT_FOUND', 'no such endpoint');
  const model = segments
    .slice(0, split)
    .map((s) => decodeSegment(s, 'MG_BAD_REFERENCE'))
    .join('/');
  if (!isValidModelName(model)) throw new ModelgateError('MG_BAD_REFERENCE', 'malformed model name');
  const rest = segments.slice(split + 1);
  const [first] = rest;

  if (segments[split] === 'blobs') {
    if (rest.length !== 1 || first === undefined)
      throw new ModelgateError('MG_ROUTE_NOT_FOUND', 'no such endpoint');
    const digest = decodeSegment(first, 'MG_BAD_REFERENCE');
    if (!digest.startsWith('sha256:') || !isSha256Hex(digest.slice(7))) {
      throw new ModelgateError(
        'MG_BAD_REFERENCE',
        'a blob digest is sha256: followed by 64 lowercase hex digits',
      );
    }
    return { kind: 'blob', model, digest };
  }

  if (first === undefined || first === '') throw new ModelgateError('MG_ROUTE_NOT_FOUND', 'no such endpoint');
  const ref = parseRef(first);
  if (rest.length === 1) return { kind: 'manifest', model, ref };
  if (rest.length === 2 && rest[1] === 'prefetch') return { kind: 'prefetch', model, ref };
  if (rest[1] !== 'files' || rest.length < 3)
    throw new ModelgateError('MG_ROUTE_NOT_FOUND', 'no such endpoint');
  const fileSegments = rest.slice(2).map((raw) => {
    const segment = decodeSegment(raw, 'MG_BAD_PATH');
    if (
      segment === '' ||
      segment === '.' ||
      segment === '..' ||
      segment.includes('/') ||
      segment.includes('\\') ||
      segment.includes('\0') ||
      raw.includes('\\')
    ) {
      throw new ModelgateError(
        'MG_BAD_PATH',
        'file paths may not contain empty, . or .. segments, encoded slashes, backslashes or NUL',
      );
    }
    return segment;
  });
  const filePath = fileSegments.join('/');
  if (!isValidFilePath(filePath)) throw new ModelgateError('MG_BAD_PATH', 'malformed file path');
  return { kind: 'file', model, ref, path: filePath };
}

/** The metric label of a request target, from a fixed set. */
export function routeLabel(route: ApiRoute | undefined): RouteLabel {
  return route?.kind ?? 'other';
}
