/**
 * A minimal static file server for the bench, used only when nginx is not
 * installed: the "direct" reference for the file store, and the per-connection
 * rate-limited origin. It answers GET and HEAD with single `Range` support and
 * a stable ETag (enough for modelgate's S3 store, which reads it as a
 * path-style bucket). Run as its own process so it never shares an event loop
 * with the measuring client:
 *
 *   node bench/lib/static-server.ts --root DIR [--rate BYTES_PER_SECOND]
 *
 * It prints one JSON line `{"port": N}` once listening on 127.0.0.1.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, normalize, sep } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';

/** 1 MiB disk reads and socket writes: few syscalls, like nginx's sendfile of large pieces. */
const PIECE_BYTES = 1024 * 1024;

/** Writes `[start, end]` of `path`, pausing between pieces so the connection stays at `rate` bytes/s. */
async function sendRange(res: ServerResponse, path: string, start: number, end: number, rate: number) {
  const began = performance.now();
  let sent = 0;
  const stream = createReadStream(path, { start, end, highWaterMark: PIECE_BYTES });
  try {
    for await (const piece of stream as AsyncIterable<Buffer>) {
      if (res.destroyed) break;
      if (!res.write(piece)) await new Promise<void>((resolve) => res.once('drain', resolve));
      sent += piece.length;
      if (rate > 0) {
        const due = (sent / rate) * 1000 - (performance.now() - began);
        if (due > 0) await sleep(due);
      }
    }
    res.end();
  } catch {
    res.destroy();
  } finally {
    stream.destroy();
  }
}

function main() {
  const { values } = parseArgs({
    options: { root: { type: 'string' }, rate: { type: 'string', default: '0' } },
  });
  if (!values.root) throw new Error('--root is required');
  const root = normalize(values.root);
  const rate = Number(values.rate);
  const server = createServer({ highWaterMark: PIECE_BYTES }, (req, res) => {
    const path = normalize(join(root, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    if (!path.startsWith(root + sep) || (req.method !== 'GET' && req.method !== 'HEAD')) {
      res.writeHead(404).end();
      return;
    }
    stat(path).then(
      (info) => {
        if (!info.isFile()) {
          res.writeHead(404).end();
          return;
        }
        const size = info.size;
        const etag = `"${info.mtimeMs.toString(16)}-${size.toString(16)}"`;
        let start = 0;
        let end = size - 1;
        let status = 200;
        const headers: Record<string, string | number> = {
          'Content-Type': 'application/octet-stream',
          'Accept-Ranges': 'bytes',
          ETag: etag,
          'Last-Modified': info.mtime.toUTCString(),
        };
        const match = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
        if (match && (match[1] !== '' || match[2] !== '')) {
          if (match[1] === '') start = Math.max(0, size - Number(match[2]));
          else {
            start = Number(match[1]);
            if (match[2] !== '') end = Math.min(Number(match[2]), size - 1);
          }
          if (start >= size || start > end) {
            res.writeHead(416, { 'Content-Range': `bytes */${size}` }).end();
            return;
          }
          status = 206;
          headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
        }
        headers['Content-Length'] = end - start + 1;
        res.writeHead(status, headers);
        if (req.method === 'HEAD' || size === 0) res.end();
        else void sendRange(res, path, start, end, rate);
      },
      () => res.writeHead(404).end(),
    );
  });
  server.listen(0, '127.0.0.1', () => {
    process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
  });
  process.once('SIGTERM', () => {
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

main();
