import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

export interface CreateLoggerOptions {
  level?: string;
  /** Where lines go; stdout by default. Tests pass a stream to read lines back. */
  destination?: DestinationStream;
}

/**
 * JSON logs with pino. Authorization and break-glass headers are redacted
 * wherever they might appear: token contents never reach a log.
 */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'modelgate' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      redact: {
        paths: [
          'req.headers.authorization',
          'req.headers["modelgate-break-glass"]',
          'token',
          'authorization',
        ],
        censor: '[redacted]',
      },
    },
    options.destination ?? pino.destination({ fd: 1, sync: false }),
  );
}
