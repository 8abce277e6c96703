import { ModelgateError } from '../errors.ts';
import type { ByteRange } from '../stores/store.ts';

/**
 * Parses a single `Range: bytes=…` header (RFC 9110 §14.1.2) against a file
 * size: `a-b`, `a-` and `-n`. Returns undefined when there is no Range
 * header. Throws MG_BAD_RANGE for malformed or multiple ranges and
 * MG_RANGE_NOT_SATISFIABLE for ranges outside the file.
 */
export function parseRange(header: string | undefined, size: number): ByteRange | undefined {
  if (header === undefined) return undefined;
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!match) {
    throw new ModelgateError(
      'MG_BAD_RANGE',
      header.includes(',') ? 'only one range per request is supported' : 'malformed Range header',
    );
  }
  const [, first = '', last = ''] = match;
  if (first === '' && last === '') throw new ModelgateError('MG_BAD_RANGE', 'malformed Range header');
  const unsatisfiable = () =>
    new ModelgateError('MG_RANGE_NOT_SATISFIABLE', `range not satisfiable for a file of ${size} bytes`, {
      headers: { 'Content-Range': `bytes */${size}` },
    });
  if (first === '') {
    const suffix = Number(last);
    if (!Number.isSafeInteger(suffix) || suffix === 0 || size === 0) throw unsatisfiable();
    return { start: Math.max(0, size - suffix), end: size };
  }
  const start = Number(first);
  const end = last === '' ? size - 1 : Number(last);
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end))
    throw new ModelgateError('MG_BAD_RANGE', 'range out of bounds');
  if (last !== '' && end < start) throw new ModelgateError('MG_BAD_RANGE', 'range end precedes its start');
  if (start >= size) throw unsatisfiable();
  return { start, end: Math.min(end, size - 1) + 1 };
}
