/**
 * One way to end a bench run early, whatever asks for it: SIGINT, SIGTERM,
 * SIGHUP, or a closed stdout or stderr (EPIPE: `sockaccel bench 2>&1 | head`,
 * where Node would otherwise die of an unhandled 'error' event, skipping the
 * cleanup). Stopping aborts the run and SIGKILLs its children (by pid), so
 * the run in progress fails fast and runBench removes what it made. SIGKILL
 * cannot be caught: the run record and leftovers.ts cover it.
 */
import os from 'node:os';
import type { ProcessGroup } from './processes';

export interface StopReason {
  /** For the message, e.g. "stopped by SIGTERM". */
  readonly reason: string;
  /** 128 + the signal number, as a shell reports a process the signal ended. */
  readonly exitCode: number;
}

const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** A write to a closed pipe: reported like a writer that SIGPIPE ended (141), which Node ignores. */
export function outputClosed(stream: 'stdout' | 'stderr', err: Error): StopReason {
  const code = (err as NodeJS.ErrnoException).code ?? err.message;
  return { reason: `${stream} was closed (${code})`, exitCode: 128 + os.constants.signals.SIGPIPE };
}

export class Shutdown {
  private readonly controller = new AbortController();
  private why: StopReason | undefined;

  constructor(private readonly group: ProcessGroup) {}

  /** Aborted once stop() was called. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** Why the run was stopped (the first cause), or undefined. */
  get stopped(): StopReason | undefined {
    return this.why;
  }

  /** Idempotent: a second cause (the EPIPE of the message about the first) changes nothing. */
  stop(why: StopReason): void {
    this.why ??= why;
    this.controller.abort();
    void this.group.killAll();
  }

  /**
   * Broken stdout/stderr stops the run for the rest of the process's life
   * (the results are written after the run, and every later write to a
   * closed pipe fails again); the signals until the returned function is
   * called, after which they end the process as usual.
   */
  listen(): () => void {
    for (const name of ['stdout', 'stderr'] as const) process[name].on('error', (err) => this.stop(outputClosed(name, err)));
    const onSignal = (signal: NodeJS.Signals) => this.stop({ reason: `stopped by ${signal}`, exitCode: 128 + os.constants.signals[signal] });
    for (const s of SIGNALS) process.on(s, onSignal);
    return () => {
      for (const s of SIGNALS) process.off(s, onSignal);
    };
  }
}
