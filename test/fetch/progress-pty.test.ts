/**
 * The live progress line as a user sees it: `modelgate fetch` runs in a real
 * pseudo-terminal (`script` from util-linux) of 60 or 120 columns, against
 * a small HTTP proxy that sends file bodies at a steady, slow rate so that
 * the transfer lasts a few seconds. The frames written to the terminal are
 * captured with the time each arrived.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { type FakeProxy, type FakeRelease, seededBytes, startFakeProxy } from './fake-proxy.ts';
import { REPO_ROOT } from './run-cli.ts';

const MiB = 1024 * 1024;
const release: FakeRelease = {
  model: 'fraud-detector',
  version: '2026.11.3',
  files: [
    { path: 'weights/model.bin', bytes: seededBytes(6 * MiB, 51), chunkSize: MiB },
    { path: 'labels.txt', bytes: Buffer.from('fraud\nlegit\n'), chunkSize: null },
  ],
};
const UNIT: Record<string, number> = { B: 1, KiB: 1024, MiB, GiB: 1024 * MiB };

interface Frame {
  /** Milliseconds after the first frame arrived. */
  at: number;
  text: string;
}

interface PtyRun {
  code: number | null;
  output: string;
  frames: Frame[];
}

const quote = (value: string) => `'${value.replaceAll("'", "'\\''")}'`;

/**
 * Runs `node src/main.ts ARGS` inside `script` with a terminal of `columns`
 * columns. `interruptAfterMs`: type Ctrl-C that long after the first frame.
 */
function runInPty(args: string[], columns: number, interruptAfterMs?: number): Promise<PtyRun> {
  const command = `stty cols ${columns} rows 24; exec ${[process.execPath, 'src/main.ts', ...args].map(quote).join(' ')}`;
  const child = spawn('script', ['-q', '-e', '-c', command, '/dev/null'], {
    cwd: REPO_ROOT,
    env: { ...process.env, MODELGATE_TOKEN: '', TERM: 'xterm' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  const chunks: Array<{ at: number; text: string }> = [];
  let firstFrameAt: number | undefined;
  let interrupted = false;
  child.stdout.setEncoding('utf8').on('data', (text: string) => {
    const at = performance.now();
    chunks.push({ at, text });
    if (firstFrameAt === undefined && text.includes(' files]')) firstFrameAt = at;
    if (interruptAfterMs !== undefined && firstFrameAt !== undefined && !interrupted) {
      interrupted = true;
      setTimeout(() => child.stdin.write('\x03'), interruptAfterMs);
    }
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 90_000);
  return new Promise((resolve, reject) => {
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, output: chunks.map((c) => c.text).join(''), frames: framesOf(chunks) });
    });
  });
}

/** Every redraw of the live line: the text after `\x1b[K` up to the next `\r` or `\n`, with its arrival time. */
function framesOf(chunks: Array<{ at: number; text: string }>): Frame[] {
  const text = chunks.map((c) => c.text).join('');
  const starts: number[] = [];
  let offset = 0;
  for (const chunk of chunks) {
    starts.push(offset);
    offset += chunk.text.length;
  }
  const arrival = (position: number) => {
    let index = 0;
    while (index + 1 < starts.length && (starts[index + 1] ?? Number.POSITIVE_INFINITY) <= position)
      index += 1;
    return chunks[index]?.at ?? 0;
  };
  const frames: Array<{ at: number; text: string }> = [];
  for (let marker = text.indexOf('\x1b[K'); marker !== -1; marker = text.indexOf('\x1b[K', marker + 1)) {
    const body = text.slice(marker + 3).split(/[\r\n]/)[0] ?? '';
    if (body.includes(' files]')) frames.push({ at: arrival(marker), text: body });
  }
  const first = frames[0]?.at ?? 0;
  return frames.map((f) => ({ at: f.at - first, text: f.text }));
}

function shownBytes(frame: string): number {
  const match = /(\d+(?:\.\d+)?) (B|KiB|MiB|GiB) \/ /.exec(frame);
  assert.ok(match, `no byte count with a unit in ${JSON.stringify(frame)}`);
  return Number(match[1]) * (UNIT[match[2] ?? ''] ?? Number.NaN);
}

function assertNeverDecreasing(frames: Frame[]): void {
  const shown = frames.map((f) => shownBytes(f.text));
  for (let i = 1; i < shown.length; i += 1) {
    assert.ok((shown[i] ?? 0) >= (shown[i - 1] ?? 0), `frame ${i} went back: ${shown.join(', ')}`);
  }
}

/** No ETA in frames that arrived within 1 s of the first (the rate settles after 2 s of received bytes). */
function assertNoEarlyEta(frames: Frame[]): void {
  const early = frames.filter((f) => f.at < 1000);
  assert.ok(early.length >= 2, `expected frames in the first second, got ${early.length}`);
  for (const frame of early) assert.doesNotMatch(frame.text, /ETA/, frame.text);
}

describe('modelgate fetch progress in a pseudo-terminal', { timeout: 240_000 }, () => {
  let proxy: FakeProxy;
  let work: string;
  let tokenFile: string;

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'modelgate-fetch-pty-'));
    tokenFile = join(work, 'token');
    await writeFile(tokenFile, 'good-token\n');
    // 6 MiB at 1.5 MiB/s: about 4 s, long enough for the rate to settle.
    proxy = await startFakeProxy(release, { bytesPerSecond: 1.5 * MiB });
  });
  after(async () => {
    await proxy.close();
    await rm(work, { recursive: true, force: true });
  });

  const args = async () => [
    'fetch',
    '--proxy',
    proxy.url,
    '--model',
    release.model,
    '--release',
    release.version,
    '--dest',
    await mkdtemp(join(work, 'dest-')),
    '--token-file',
    tokenFile,
    '--concurrency',
    '1',
  ];

  describe('when the terminal has 120 columns', () => {
    it('shows no ETA before the rate settles, then an ETA and rate, and never a smaller byte count', async () => {
      const run = await runInPty(await args(), 120);
      assert.equal(run.code, 0, run.output);
      assert.ok(run.frames.length >= 5, `expected >= 5 frames, got ${run.frames.length}`);
      assertNoEarlyEta(run.frames);
      assertNeverDecreasing(run.frames);
      const withEta = run.frames.filter((f) => /ETA \d/.test(f.text));
      assert.ok(withEta.length > 0, run.frames.map((f) => f.text).join('\n'));
      assert.ok(withEta.every((f) => f.at >= 1000));
      for (const frame of run.frames) {
        assert.ok(frame.text.length <= 119, frame.text);
        assert.match(frame.text, /fraud-detector@2026\.11\.3/);
      }
    });
  });

  describe('when the terminal has 60 columns', () => {
    it('keeps the unit and the file count in every frame, within the width', async () => {
      const run = await runInPty(await args(), 60);
      assert.equal(run.code, 0, run.output);
      assert.ok(run.frames.length >= 5, `expected >= 5 frames, got ${run.frames.length}`);
      assertNoEarlyEta(run.frames);
      assertNeverDecreasing(run.frames);
      for (const frame of run.frames) {
        assert.ok(frame.text.length <= 59, `${frame.text.length} columns: ${frame.text}`);
        assert.match(frame.text, /\d (B|KiB|MiB) \/ \d+\.\d MiB/);
        assert.match(frame.text, /\[\d\/2 files\]/);
      }
    });
  });

  describe('when the user types Ctrl-C mid-transfer', () => {
    it('exits 130, never draws a smaller byte count, and says that a rerun resumes', async () => {
      const run = await runInPty(await args(), 120, 1500);
      assert.equal(run.code, 130, run.output);
      assertNeverDecreasing(run.frames);
      const resume = run.output.split(/\r?\n/).filter((line) => line.includes('rerun the same command'));
      assert.equal(resume.length, 1, run.output);
      assert.match(resume[0] ?? '', /interrupted; partial files \(\d+\.\d MiB\) are kept in /);
    });
  });
});
