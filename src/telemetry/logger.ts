import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger } from 'pino';

export interface CreateLoggerOptions {
  level?: string;
  /** Where lines go; stdout by default. Tests pass a stream to read lines back. */
  destination?: DestinationStream;
}

/** pino's numeric level of `error`: lines below it (info, warn) carry no stack traces. */
const ERROR_LEVEL = 50;

/**
 * An error as one short object without its stack: the type, message, code
 * and the cause's message. Warn lines report expected trouble (a key
 * endpoint down, a source retried); a stack there is noise that buries the
 * reason, and is kept for error and fatal lines, where it helps.
 */
export function summarizeError(error: unknown): unknown {
  if (!(error instanceof Error)) return error;
  const code = (error as { code?: unknown }).code;
  const cause = error.cause instanceof Error ? error.cause.message : undefined;
  return {
    type: error.name,
    message: error.message,
    ...(typeof code === 'string' || typeof code === 'number' ? { code } : {}),
    ...(cause === undefined ? {} : { cause }),
  };
}

/**
 * JSON logs with pino. Authorization and break-glass headers are redacted
 * wherever they might appear: token contents never reach a log. Below error
 * level, an `err` is summarized without its stack (`summarizeError`).
 */
export function createLogger(options: CreateLoggerOptions = {}): Logger {
  return pino(
    {
      level: options.level ?? 'info',
      base: { service: 'modelgate' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
      // The standard serializer for real errors (error and fatal lines); a summary passes as it is.
      serializers: {
        err: (value: unknown) => (value instanceof Error ? pino.stdSerializers.err(value) : value),
      },
      hooks: {
        logMethod(args, method, level) {
          const [first] = args;
          if (level < ERROR_LEVEL && typeof first === 'object' && first !== null && 'err' in first) {
            const summarized = { ...first, err: summarizeError((first as { err: unknown }).err) };
            return method.apply(this, [summarized, ...args.slice(1)] as Parameters<typeof method>);
          }
          return method.apply(this, args);
        },
      },
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
