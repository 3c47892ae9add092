import { setTimeout as sleep } from 'node:timers/promises';

/**
 * Every deadline in the tests is multiplied by SOCKACCEL_TEST_TIME_SCALE
 * (default 1): a TCG guest of scripts/kernel-vm.sh runs 10-15x slower than
 * the host, and scripts/test-kernels.sh sets it. Deadlines only: nothing
 * waits longer when things are on time.
 */
export const TIME_SCALE = Math.max(1, Number(process.env.SOCKACCEL_TEST_TIME_SCALE) || 1);
export const scaled = (ms: number): number => ms * TIME_SCALE;

export interface WaitOptions {
  /** Give up after this long. Generous: a loaded or slow machine (a TCG VM) is 10-15x slower. */
  timeoutMs?: number;
  /** How often to ask again. */
  intervalMs?: number;
  /**
   * Asked before every check: a reason (e.g. a child's failure report once it
   * exited) ends the wait at once with that reason instead of at the deadline.
   */
  failIf?: () => string | false | undefined;
}

/**
 * Waits until `check` returns a value that is neither false, undefined nor null,
 * and returns that value. Never waits a fixed time for something to have
 * happened: every wait in the tests is a condition with a deadline. `what`
 * names the condition in the timeout error, with the last value or error seen
 * (an error thrown by `check` counts as "not yet").
 */
export async function waitFor<T>(what: string, check: () => T | false | undefined | null | Promise<T | false | undefined | null>, opts: WaitOptions = {}): Promise<T> {
  const timeoutMs = scaled(opts.timeoutMs ?? 20_000);
  const intervalMs = opts.intervalMs ?? 50;
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    const failure = opts.failIf?.();
    if (failure) throw new Error(`gave up waiting for ${what}: ${failure}`);
    try {
      const value = await check();
      if (value !== false && value !== undefined && value !== null) return value;
      last = value;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) {
      const seen = last instanceof Error ? last.message : JSON.stringify(last, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v));
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last seen: ${seen})`);
    }
    await sleep(intervalMs);
  }
}
