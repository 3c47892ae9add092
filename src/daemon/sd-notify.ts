/**
 * systemd's service notification protocol (sd_notify(3)): READY=1 once the
 * data path is up, STATUS= with a one-line summary, WATCHDOG=1 pings and
 * STOPPING=1. Outside systemd (NOTIFY_SOCKET unset) every call is a no-op and
 * libsystemd is never opened.
 *
 * Sent through libsystemd's sd_notify() over the FFI the daemon already
 * loads, not with the `systemd-notify` npm package: that one spawns the
 * systemd-notify binary for every message, so messages come from a child pid,
 * which systemd accepts only with NotifyAccess=all (any process in the unit
 * could then report READY), it races with the child's exit on older systemd,
 * and it has no watchdog call. Here every message comes from the main pid, so
 * the unit can say NotifyAccess=main.
 */
import type { Logger } from 'pino';
import { strerror } from '../kernel/libc';
import { bindLibrary } from '../kernel/native';
import { EnvironmentError } from '../common/errors';

const LIBSYSTEMD = 'libsystemd.so.0';
const libsystemd = bindLibrary(LIBSYSTEMD, {
  // int sd_notify(int unset_environment, const char *state): > 0 sent, 0 no socket, < 0 -errno
  sd_notify: ['int', ['int', 'string']],
} as const);

/** sd_watchdog_enabled() treats this and larger as "no watchdog" (USEC_INFINITY). */
const USEC_INFINITY = 2n ** 64n - 1n;

/**
 * The watchdog interval systemd asks this process for, in microseconds, or
 * undefined when there is none: what sd_watchdog_enabled() answers.
 * WATCHDOG_PID, when set, names the process the watchdog is meant for; a
 * child that inherited the variables must not ping for its parent.
 */
export function watchdogUsec(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): number | undefined {
  const usecText = env.WATCHDOG_USEC;
  if (usecText === undefined || !/^\d+$/.test(usecText)) return undefined;
  const usec = BigInt(usecText);
  if (usec === 0n || usec >= USEC_INFINITY) return undefined;
  const pidText = env.WATCHDOG_PID;
  if (pidText !== undefined && (!/^\d+$/.test(pidText) || Number(pidText) !== pid)) return undefined;
  return Number(usec);
}

/** Keeps a STATUS= value to one line: systemd shows it in `systemctl status`. */
export function statusLine(text: string): string {
  return text.replace(/\s*[\r\n]+\s*/g, ' ').trim();
}

export interface Notifier {
  /** True when systemd listens (NOTIFY_SOCKET set). */
  readonly enabled: boolean;
  /** READY=1: the data path is up. */
  ready(status: string): void;
  status(text: string): void;
  /** STOPPING=1: shutdown has begun. */
  stopping(status: string): void;
  /**
   * Pings WATCHDOG=1 from the event loop at half the interval systemd asked
   * for, so a blocked loop misses its pings and systemd restarts the daemon.
   * Returns the function that stops the pings (a no-op without a watchdog).
   */
  startWatchdog(): () => void;
}

export function createNotifier(log: Logger, env: NodeJS.ProcessEnv = process.env): Notifier {
  const socket = env.NOTIFY_SOCKET;
  if (socket === undefined || socket === '') {
    return { enabled: false, ready: () => {}, status: () => {}, stopping: () => {}, startWatchdog: () => () => {} };
  }
  let lib: ReturnType<typeof libsystemd>;
  try {
    lib = libsystemd();
  } catch (err) {
    throw new EnvironmentError(`NOTIFY_SOCKET is set but ${LIBSYSTEMD} cannot be loaded: ${(err as Error).message}`, {
      hint: 'install libsystemd0, or run the service with Type=simple',
    });
  }
  const send = (state: string): void => {
    const ret = lib.sd_notify(0, state);
    // A lost notification is not fatal by itself: a missing READY=1 shows up
    // as a start timeout, a missing WATCHDOG=1 as a restart, both logged by systemd.
    if (ret < 0) log.warn({ state: state.split('\n')[0], errno: -ret }, `sd_notify failed: ${strerror(-ret)}`);
  };
  return {
    enabled: true,
    ready: (status) => send(`READY=1\nSTATUS=${statusLine(status)}`),
    status: (text) => send(`STATUS=${statusLine(text)}`),
    stopping: (status) => send(`STOPPING=1\nSTATUS=${statusLine(status)}`),
    startWatchdog() {
      const usec = watchdogUsec(env);
      if (usec === undefined) return () => {};
      const intervalMs = Math.max(1, Math.floor(usec / 2000));
      send('WATCHDOG=1');
      const timer = setInterval(() => send('WATCHDOG=1'), intervalMs);
      // The pings must never be what keeps the process alive.
      timer.unref();
      log.debug({ intervalMs }, 'watchdog pings started');
      return () => clearInterval(timer);
    },
  };
}
