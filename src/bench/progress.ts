/**
 * Progress on stderr: one redrawn bar on a terminal, plain lines otherwise
 * (CI logs, pipes), so stdout stays clean for the table or --json.
 */
export interface ProgressOutput {
  readonly isTTY?: boolean;
  readonly columns?: number;
  write(text: string): unknown;
}

const BAR_WIDTH = 24;

function formatDuration(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000));
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export class Progress {
  private done = 0;
  private readonly started = Date.now();
  private barShown = false;
  private finished = false;

  constructor(
    private readonly total: number,
    private readonly out: ProgressOutput = process.stderr,
  ) {}

  /** Announces the next step; `label` says what it measures. */
  step(label: string): void {
    this.done++;
    const count = `${this.done}/${this.total}`;
    if (!this.out.isTTY) {
      this.out.write(`bench: [${count}] ${label}\n`);
      return;
    }
    const filled = Math.round((BAR_WIDTH * (this.done - 1)) / Math.max(1, this.total));
    const elapsed = Date.now() - this.started;
    const eta = this.done > 1 ? ` ETA ${formatDuration((elapsed / (this.done - 1)) * (this.total - this.done + 1))}` : '';
    const line = `[${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${count}${eta} ${label}`;
    this.out.write(`\r\x1b[K${line.slice(0, (this.out.columns ?? 100) - 1)}`);
    this.barShown = true;
  }

  /** A line of its own (a finding, a warning), above the bar. */
  note(text: string): void {
    this.clear();
    this.out.write(`bench: ${text}\n`);
  }

  /** Removes the bar (before the results are printed). Idempotent. */
  finish(completed: boolean): void {
    if (this.finished) return;
    this.finished = true;
    this.clear();
    if (!this.out.isTTY) this.out.write(`bench: ${completed ? 'done in' : 'stopped after'} ${formatDuration(Date.now() - this.started)}\n`);
  }

  private clear(): void {
    if (this.barShown) this.out.write('\r\x1b[K');
    this.barShown = false;
  }
}
