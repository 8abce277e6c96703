/** The strong ETag of anything addressed by its digest. */
export function etagOf(digest: string): string {
  return `"${digest}"`;
}

/** RFC 9110 §13.1.2 If-None-Match, weak comparison: true when a 304 answers the request. */
export function matchesIfNoneMatch(header: string | undefined, etag: string): boolean {
  if (!header) return false;
  return header.split(',').some((candidate) => {
    const value = candidate.trim().replace(/^W\//, '');
    return value === etag || value === '*';
  });
}
