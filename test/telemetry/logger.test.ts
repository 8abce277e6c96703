import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { createLogger } from '../../src/telemetry/logger.ts';

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, done) {
      for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push(JSON.parse(line));
      done();
    },
  });
  return { lines, logger: createLogger({ destination }) };
}

// Regression: warn lines (issuer keys not loaded, a source retried) carried full stack traces.
describe('the logger', () => {
  const failure = Object.assign(
    new Error('connect ECONNREFUSED 127.0.0.1:9', { cause: new Error('inner') }),
    {
      code: 'ECONNREFUSED',
    },
  );

  describe('when a warn or info line carries an error', () => {
    it('logs its type, message, code and cause, without a stack', () => {
      const { lines, logger } = capture();
      logger.warn({ issuer: 'eks', err: failure }, 'issuer keys could not be loaded');
      logger.info({ err: failure }, 'retrying');
      assert.equal(lines.length, 2);
      for (const line of lines) {
        assert.deepEqual(line.err, {
          type: 'Error',
          message: 'connect ECONNREFUSED 127.0.0.1:9',
          code: 'ECONNREFUSED',
          cause: 'inner',
        });
        assert.doesNotMatch(JSON.stringify(line), /\bat .*\.ts:\d+/);
      }
      assert.equal(lines[0]?.issuer, 'eks');
    });
  });

  describe('when an error line carries an error', () => {
    it('keeps the stack, where it helps', () => {
      const { lines, logger } = capture();
      logger.error({ err: failure }, 'unhandled request error');
      const err = lines[0]?.err as { stack?: string };
      assert.match(err.stack ?? '', /logger\.test\.ts/);
    });
  });

  describe('when a line has a token field', () => {
    it('redacts it', () => {
      const { lines, logger } = capture();
      logger.info({ token: 'eyJ.secret.sig' }, 'x');
      assert.equal(lines[0]?.token, '[redacted]');
    });
  });
});
