import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/** A real HTTP origin on 127.0.0.1 that serves one body, counts GETs, and can answer late. */
export interface CountingOrigin {
  url: string;
  gets(): number;
  close(): Promise<void>;
}

export async function startCountingOrigin(body: Uint8Array, delayMs = 0): Promise<CountingOrigin> {
  let gets = 0;
  const server: Server = createServer((req, res) => {
    gets += 1;
    setTimeout(() => {
      res.writeHead(200, { 'content-length': body.length });
      res.end(body);
    }, delayMs);
    req.resume();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/chunk`,
    gets: () => gets,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
