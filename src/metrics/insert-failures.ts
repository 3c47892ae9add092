/**
 * Turns the insert_fail_full counter into a log line an operator can act
 * on: at most one warning per interval, with how many sockets missed out
 * since the last one. The daemon feeds it on its status interval.
 */
import type { Logger } from 'pino';
import type { Stats } from '../kernel/bpf-layout';

export const INSERT_WARNING_INTERVAL_MS = 60_000;

export class InsertFailureWarning {
  /** insert_fail_full at the last warning; undefined until the first observation. */
  private reported: bigint | undefined;
  private lastWarnMs = -Infinity;

  constructor(
    private readonly log: Logger,
    /** Sockets each sockhash holds (the pinned size, which may differ from mapSize). */
    private readonly capacity: number,
    private readonly intervalMs = INSERT_WARNING_INTERVAL_MS,
    private readonly now: () => number = Date.now,
  ) {}

  observe(stats: Stats): void {
    const total = stats.insert_fail_full;
    // Failures counted before we started (reused pins) are not news.
    if (this.reported === undefined) {
      this.reported = total;
      return;
    }
    if (total <= this.reported || this.now() - this.lastWarnMs < this.intervalMs) return;
    const missed = total - this.reported;
    this.log.warn(
      { missed: missed.toString(), total: total.toString(), capacity: this.capacity },
      `sockhash full: ${missed} sockets stayed on plain TCP since the last report; raise mapSize above ${this.capacity} ` +
        '(pinned maps keep their size: it takes effect after `sockaccel purge` and a restart)',
    );
    this.reported = total;
    this.lastWarnMs = this.now();
  }
}
