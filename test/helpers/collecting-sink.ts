/** A source-reader sink for tests: collects what arrives and checks every offset follows the previous buffer. */
import assert from 'node:assert/strict';
import type { PieceSink } from '../../src/integrity/source-reader.ts';

/** A retry resumes from the bytes already collected (`resumeOffset`). */
export function collectingSink(start = 0) {
  const parts: Buffer[] = [];
  let next = start;
  const offsets: number[] = [];
  const sink: PieceSink = {
    onData(buffer, offset) {
      offsets.push(offset);
      assert.equal(offset, next, 'each buffer starts where the previous one ended');
      next += buffer.length;
      parts.push(Buffer.from(buffer));
    },
    resumeOffset: () => next,
  };
  return { sink, bytes: () => Buffer.concat(parts), offsets };
}
