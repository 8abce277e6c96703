import { readFileSync, statSync } from 'node:fs';
import type { Server as TlsServer } from 'node:tls';
import type { TlsConfig } from '../config/config.types.ts';
import type { Logger } from '../telemetry/logger.ts';

/** What identifies one version of a file: inode (changes on Kubernetes' symlink swap), mtime and size. */
function versionOf(file: string): string {
  const stat = statSync(file);
  return `${stat.ino}:${stat.mtimeMs}:${stat.size}`;
}

export function readTlsFiles(tls: TlsConfig): { cert: Buffer; key: Buffer } {
  return { cert: readFileSync(tls.cert), key: readFileSync(tls.key) };
}

/**
 * Keeps a TLS server's certificate in step with its files: before each new
 * connection's handshake, the files are stat'ed and, when either changed,
 * read again and installed with `setSecureContext`. Connections already open
 * keep the certificate they started with. A pair that does not load (a key
 * written before its certificate, a half-written file) keeps the previous
 * certificate and is retried once the files change again.
 */
export function keepTlsFilesLoaded(server: TlsServer, tls: TlsConfig, logger: Logger): void {
  let applied = safeVersion(tls);
  let failed: string | undefined;
  const check = () => {
    const version = safeVersion(tls);
    if (version === undefined || version === applied || version === failed) return;
    try {
      server.setSecureContext(readTlsFiles(tls));
      applied = version;
      failed = undefined;
      logger.info({ event: 'tls_reloaded', cert: tls.cert }, 'TLS certificate reloaded');
    } catch (error) {
      failed = version;
      logger.error(
        { event: 'tls_reload_failed', cert: tls.cert, err: String(error) },
        'TLS reload failed; keeping the previous certificate',
      );
    }
  };
  // Node's own listener creates the TLS socket from the current context, so ours must run first.
  server.prependListener('connection', check);
}

function safeVersion(tls: TlsConfig): string | undefined {
  try {
    return `${versionOf(tls.cert)}|${versionOf(tls.key)}`;
  } catch {
    return undefined;
  }
}
