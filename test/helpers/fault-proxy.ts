/**
 * A TCP proxy on 127.0.0.1 in front of any test server, to break connections
 * the way networks do: cut a connection after N response bytes (the client
 * sees a truncated body), stall it after N bytes (nothing more arrives, the
 * socket stays open), or refuse it (reset on accept). Faults apply per
 * connection: each new connection takes the next queued plan, else the
 * default plan, so a test can fail the first attempt and let the retry
 * through. It also counts connections and the bytes each one carried.
 *
 * ```ts
 * const proxy = await startFaultProxy({ port: s3.port });
 * proxy.queue({ cutAfterBytes: 4096 });   // the next connection breaks
 * // point the client at proxy.url
 * after(() => proxy.close());
 * ```
 */
import { connect, createServer, type Server, type Socket } from 'node:net';

export interface FaultPlan {
  /** Forward this many response (server → client) bytes, then close both sides. */
  cutAfterBytes?: number;
  /** Forward this many response bytes, then forward nothing more (both sockets stay open). */
  stallAfterBytes?: number;
  /** Reset the connection as soon as it is accepted. */
  refuse?: boolean;
  /**
   * Accept the connection but forward nothing (either way) until this settles:
   * a test can let a retry through only after it changed the origin.
   */
  hold?: Promise<unknown>;
}

export interface ProxiedConnection {
  readonly id: number;
  readonly plan: FaultPlan;
  /** Request bytes forwarded client → server. */
  bytesUp: number;
  /** Response bytes forwarded server → client. */
  bytesDown: number;
  open: boolean;
  /** The plan's fault has happened on this connection. */
  faulted: boolean;
}

export interface FaultProxy {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** The plan for connections when the queue is empty (default: no fault). */
  setDefault(plan: FaultPlan): void;
  /** Plans for the next connections, one each, in order. */
  queue(...plans: FaultPlan[]): void;
  /** Every connection accepted so far, oldest first. */
  connections(): readonly ProxiedConnection[];
  /** Connections currently open. */
  openConnections(): number;
  /** Closes every open connection (both sides) now. */
  cutAll(): void;
  /** Stops listening and closes every connection; safe to call twice. */
  close(): Promise<void>;
}

export interface FaultProxyOptions {
  /** Upstream port on 127.0.0.1. */
  port: number;
  host?: string;
}

/** Starts a fault-injecting TCP proxy on 127.0.0.1, port 0. */
export async function startFaultProxy(options: FaultProxyOptions): Promise<FaultProxy> {
  const upstreamHost = options.host ?? '127.0.0.1';
  let defaultPlan: FaultPlan = {};
  const planQueue: FaultPlan[] = [];
  const connections: ProxiedConnection[] = [];
  const sockets = new Set<Socket>();
  let closed = false;

  const server: Server = createServer((client) => {
    const plan = planQueue.shift() ?? defaultPlan;
    const connection: ProxiedConnection = {
      id: connections.length + 1,
      plan,
      bytesUp: 0,
      bytesDown: 0,
      open: true,
      faulted: false,
    };
    connections.push(connection);
    if (plan.refuse === true) {
      connection.faulted = true;
      connection.open = false;
      client.resetAndDestroy();
      return;
    }
    if (plan.hold !== undefined) {
      sockets.add(client);
      // A client that gives up while held must not crash the proxy with an unhandled 'error'.
      client.on('error', () => client.destroy());
      const proceed = () => {
        if (!client.destroyed) relay(client, connection);
      };
      plan.hold.then(proceed, proceed);
      return;
    }
    relay(client, connection);
  });

  /** Relays one accepted connection to the upstream under its plan. */
  function relay(client: Socket, connection: ProxiedConnection) {
    const { plan } = connection;
    const upstream = connect({ host: upstreamHost, port: options.port });
    sockets.add(client);
    sockets.add(upstream);
    const closeBoth = () => {
      connection.open = false;
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on('error', closeBoth);
    client.on('close', closeBoth);
    // After a fault the client side lives on by itself: a cut finishes flushing, a stall stays open.
    const upstreamGone = () => {
      if (!connection.faulted) closeBoth();
    };
    upstream.on('error', upstreamGone);
    upstream.on('close', upstreamGone);

    client.on('data', (chunk: Buffer) => {
      connection.bytesUp += chunk.length;
      if (!upstream.write(chunk)) {
        client.pause();
        upstream.once('drain', () => client.resume());
      }
    });
    client.on('end', () => upstream.end());

    const limit = plan.cutAfterBytes ?? plan.stallAfterBytes;
    upstream.on('data', (chunk: Buffer) => {
      if (connection.faulted) return;
      let piece = chunk;
      if (limit !== undefined && connection.bytesDown + piece.length >= limit) {
        piece = piece.subarray(0, limit - connection.bytesDown);
        connection.faulted = true;
      }
      connection.bytesDown += piece.length;
      const flushed = piece.length === 0 ? true : client.write(piece);
      if (connection.faulted) {
        if (plan.cutAfterBytes !== undefined) {
          // Let the allowed bytes reach the client, then close: a clean FIN mid-body.
          client.end(() => closeBoth());
          upstream.destroy();
        } else {
          // Stalled: read nothing more from the server, send nothing more to the client.
          upstream.pause();
        }
        return;
      }
      if (!flushed) {
        upstream.pause();
        client.once('drain', () => upstream.resume());
      }
    });
    upstream.on('end', () => {
      if (!connection.faulted) client.end();
    });
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address !== null ? address.port : 0;

  const cutAll = () => {
    for (const socket of sockets) socket.destroy();
    sockets.clear();
    for (const connection of connections) connection.open = false;
  };

  return {
    url: `http://127.0.0.1:${port}`,
    port,
    setDefault: (plan) => {
      defaultPlan = plan;
    },
    queue: (...plans) => {
      planQueue.push(...plans);
    },
    connections: () => connections,
    openConnections: () => connections.filter((c) => c.open).length,
    cutAll,
    close: async () => {
      if (closed) return;
      closed = true;
      cutAll();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
