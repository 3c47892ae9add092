// Structured JSON logs on stdout (journald/kubectl logs collect them); each
// part of the daemon logs through a child carrying its component name.
import pino, { type DestinationStream, type Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function createLogger({ level, destination }: { level: LogLevel; destination?: DestinationStream }): Logger {
  // Without a destination pino writes to stdout.
  return pino({ level, base: { name: 'sockaccel', pid: process.pid } }, destination);
}

export function componentLogger(root: Logger, component: string): Logger {
  return root.child({ component });
}
