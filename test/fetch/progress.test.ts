/**
 * The live progress line of `modelgate fetch`, driven with a hand-moved
 * clock and a fixed terminal width: every frame the reporter writes is
 * captured and parsed.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  type FetchReporter,
  type ProgressFrame,
  RateMeter,
  type RedrawClock,
  renderProgressLine,
  ttyReporter,
} from '../../src/fetch/progress.ts';

const KiB = 1024;
const MiB = 1024 * KiB;
const GiB = 1024 * MiB;
const UNIT = { B: 1, KiB, MiB, GiB, TiB: 1024 * GiB } as const;

/** A clock moved by hand; `tick` runs the redraw the reporter scheduled. */
function manualClock() {
  let now = 0;
  let tick: (() => void) | undefined;
  const clock: RedrawClock = {
    now: () => now,
    every(_ms, run) {
      tick = run;
      return () => {
        tick = undefined;
      };
    },
  };
  return {
    clock,
    /** Moves time forward and redraws, as the 250 ms timer would. */
    advance(ms: number) {
      now += ms;
      tick?.();
    },
  };
}

/** The frames written to a fake terminal of `columns` columns. */
function terminal(columns: number) {
  let text = '';
  return {
    out: {
      columns,
      write(chunk: string) {
        text += chunk;
      },
    },
    /** Every redraw of the live line (text after `\r\x1b[K` that is not a finished line). */
    frames(): string[] {
      return text
        .split('\r\x1b[K')
        .map((piece) => piece.split('\n')[0] ?? '')
        .filter((piece) => piece.includes(' files]'));
    },
  };
}

/** The byte count a frame shows (`12.0 MiB / 80.0 MiB` → bytes of the first figure). */
function shownBytes(frame: string): number {
  const match = /(\d+(?:\.\d+)?) (B|KiB|MiB|GiB|TiB) \/ /.exec(frame);
  assert.ok(match, `no byte count in ${JSON.stringify(frame)}`);
  return Number(match[1]) * UNIT[match[2] as keyof typeof UNIT];
}

function start(reporter: FetchReporter, bytes: number, files = 3): void {
  reporter.release({
    model: 'fraud-detector',
    version: '2026.11.3',
    releaseDigest: 'sha256:ab',
    files,
    bytes,
  });
}

describe('the progress line', () => {
  describe('when the transfer has just started', () => {
    // Regression: the first frame showed an ETA of thousands of hours, computed from the first instants.
    it('shows no ETA and no rate before 2 s of received bytes, then both', () => {
      const { clock, advance } = manualClock();
      const tty = terminal(120);
      const reporter = ttyReporter(tty.out, clock);
      start(reporter, 80 * MiB);
      for (let ms = 0; ms < 1750; ms += 250) {
        reporter.progress(64 * KiB);
        reporter.received(64 * KiB);
        advance(250);
      }
      const early = tty.frames();
      assert.ok(early.length >= 7, `expected >= 7 frames, got ${early.length}`);
      for (const frame of early) {
        assert.doesNotMatch(frame, /ETA/);
        assert.doesNotMatch(frame, /\/s\b/);
      }
      for (let i = 0; i < 8; i += 1) {
        reporter.progress(MiB);
        reporter.received(MiB);
        advance(250);
      }
      const late = tty.frames().at(-1) ?? '';
      assert.match(late, /ETA \d+s/);
      assert.match(late, /MiB\/s/);
      reporter.close();
    });

    it('shows no ETA while fewer than 256 KiB arrived, however long it took', () => {
      let now = 0;
      const meter = new RateMeter(() => now);
      assert.equal(meter.sample(), undefined);
      meter.add(100 * KiB);
      now = 10_000;
      assert.equal(meter.sample(), undefined);
      meter.add(200 * KiB);
      now = 10_250;
      assert.ok((meter.sample() ?? 0) > 0);
    });
  });

  describe('when the fetch resumes from a partial file', () => {
    // Regression: resumed bytes counted as transferred, so the rate read gigabytes per second.
    it('computes the rate from bytes received in this run only', () => {
      const { clock, advance } = manualClock();
      const tty = terminal(120);
      const reporter = ttyReporter(tty.out, clock);
      start(reporter, 10 * GiB);
      reporter.progress(5 * GiB); // verified prefix of a partial file from an earlier run
      for (let i = 0; i < 12; i += 1) {
        reporter.progress(256 * KiB);
        reporter.received(256 * KiB); // 1 MiB/s
        advance(250);
      }
      const last = tty.frames().at(-1) ?? '';
      assert.match(last, / {2}1\.0 MiB\/s {2}/, last);
      assert.ok(shownBytes(last) >= 5 * GiB);
      reporter.close();
    });
  });

  describe('when bytes are rolled back to a verified checkpoint, or the fetch is interrupted', () => {
    // Regression: after a rollback (or Ctrl-C) the byte count went backwards.
    it('never draws a smaller byte count than before', () => {
      const { clock, advance } = manualClock();
      const tty = terminal(120);
      const reporter = ttyReporter(tty.out, clock);
      start(reporter, 40 * MiB);
      const deltas = [3 * MiB, 2 * MiB, -4 * MiB, MiB, 2 * MiB, -1 * MiB, 6 * MiB];
      for (const delta of deltas) {
        reporter.progress(delta);
        if (delta > 0) reporter.received(delta);
        advance(250);
      }
      // Ctrl-C: the in-flight bytes are rolled back, the line is drawn once more and closed.
      reporter.progress(-5 * MiB);
      reporter.retry({ path: 'model.bin', attempt: 1, offset: 0, code: 'FETCH_NETWORK', delayMs: 0 });
      reporter.close();
      const shown = tty.frames().map(shownBytes);
      assert.ok(shown.length >= deltas.length);
      for (let i = 1; i < shown.length; i += 1) {
        assert.ok(shown[i]! >= shown[i - 1]!, `frame ${i} went back: ${shown.join(', ')}`);
      }
    });
  });

  describe('when the terminal is narrow', () => {
    const frame: ProgressFrame = {
      name: 'team/fraud-detector-large@2026.11.3',
      done: 1.5 * GiB,
      total: 12 * GiB,
      filesDone: 3,
      files: 12,
      rate: 105.3 * MiB,
    };

    // Regression: at 60 columns the line was cut at the right and lost its unit and file count.
    it('keeps the byte count with its unit and the file count at 60 columns', () => {
      const line = renderProgressLine(frame, 59);
      assert.ok(line.length <= 59, line);
      assert.match(line, /1\.5 GiB \/ 12\.0 GiB/);
      assert.match(line, /\[3\/12 files\]$/);
      assert.doesNotMatch(line, /fraud-detector/);
    });

    it('shows every field at 120 columns', () => {
      const line = renderProgressLine(frame, 119);
      for (const part of [
        'team/fraud-detector-large@2026.11.3',
        '1.5 GiB / 12.0 GiB',
        '12%',
        '105.3 MiB/s',
        'ETA ',
        '[3/12 files]',
      ]) {
        assert.ok(line.includes(part), `${part} missing from ${line}`);
      }
    });

    it('keeps the bytes and the file count down to 34 columns', () => {
      const line = renderProgressLine(frame, 33);
      assert.equal(line, '1.5 GiB / 12.0 GiB  [3/12 files]');
    });

    it('reads the width from the terminal at every redraw', () => {
      const { clock, advance } = manualClock();
      const tty = terminal(120);
      const reporter = ttyReporter(tty.out, clock);
      start(reporter, 80 * MiB);
      advance(250);
      tty.out.columns = 30;
      advance(250);
      reporter.close();
      const [wide, narrow] = tty.frames().slice(-2);
      assert.match(wide ?? '', /fraud-detector@2026\.11\.3/);
      assert.ok((narrow ?? '').length <= 29, narrow);
      assert.match(narrow ?? '', /B \/ 80\.0 MiB/);
    });
  });
});
