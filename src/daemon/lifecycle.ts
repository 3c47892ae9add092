/**
 * The one shutdown path: components register a closer as they start; stop()
 * runs the closers in reverse start order under one deadline, so a hung
 * closer cannot keep the process alive past it.
 */
import type { Logger } from 'pino';

type Closer = () => void | Promise<void>;

export class Lifecycle {
  private readonly closers: { name: string; close: Closer }[] = [];
  private stopping: Promise<boolean> | undefined;

  constructor(private readonly log: Logger) {}

  /** Registers `close` to run at stop, before everything registered earlier. */
  add(name: string, close: Closer): void {
    this.closers.push({ name, close });
  }

  /** Resolves true if every closer finished in time. Idempotent. */
  stop(deadlineMs: number): Promise<boolean> {
    this.stopping ??= this.runClosers(deadlineMs);
    return this.stopping;
  }

  private async runClosers(deadlineMs: number): Promise<boolean> {
    const deadline = Date.now() + deadlineMs;
    let clean = true;
    for (const { name, close } of [...this.closers].reverse()) {
      let timer: NodeJS.Timeout | undefined;
      try {
        const done = await Promise.race([
          Promise.resolve().then(close).then(() => true),
          new Promise<false>((resolve) => {
            timer = setTimeout(resolve, Math.max(0, deadline - Date.now()), false);
          }),
        ]);
        if (!done) {
          this.log.error({ step: name, deadlineMs }, 'shutdown deadline passed; skipping the rest');
          return false;
        }
        // "step", not "component": the daemon's logger already carries that key.
        this.log.info({ step: name }, 'closed');
      } catch (err) {
        clean = false;
        this.log.error({ err, step: name }, 'close failed');
      } finally {
        clearTimeout(timer);
      }
    }
    return clean;
  }
}
