// The logger: one JSON object per line on stdout, with Cloud Logging's `severity` and `message`,
// the platform's run labels on every line, and secret-bearing fields redacted by path.
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

// pino level → Cloud Logging severity, as Google's own pino configuration maps them.
const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

// Field names that may carry a secret anywhere in a log object; their values are replaced.
const REDACT_PATHS = [
  'password', '*.password', '*.*.password',
  'secret', '*.secret', '*.*.secret', 'secrets', '*.secrets',
  'authorization', '*.authorization', '*.*.authorization',
  'headers', '*.headers',
  'connectionString', '*.connectionString',
  'secretAccessKey', '*.secretAccessKey', 'sessionToken', '*.sessionToken',
  'accountKey', '*.accountKey', 'sasToken', '*.sasToken', 'credentials', '*.credentials',
];

export type LogOptions = {
  level: string;
  // Fields put on every line, e.g. the Cloud Run execution and the Kubernetes pod.
  base: Record<string, string | number>;
  // Where lines go; stdout unless a test passes its own stream.
  destination?: pino.DestinationStream;
};

// Creates the run's logger. Writes synchronously so that nothing is lost when the process exits.
export function createLogger(options: LogOptions): Logger {
  return pino(
    {
      level: options.level,
      messageKey: 'message',
      base: options.base,
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      formatters: {
        level: (label) => ({ severity: SEVERITY[label] ?? 'DEFAULT', level: label }),
      },
    },
    options.destination ?? pino.destination({ dest: 1, sync: true }),
  );
}
