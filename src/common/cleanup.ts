/**
 * Cleanup that never hides the original failure: used wherever something is
 * created that must be removed again (namespaces, cgroups, pins, processes),
 * by the bench and by the test helpers.
 */
const message = (err: unknown): string => (err instanceof Error ? err.message : String(err));

/**
 * Runs `cleanUp` after `body` failed and rethrows the body's error. If cleanup
 * fails too, the body's error stays the headline (it is the cause) and the
 * cleanup failure is appended instead of replacing it, as try/finally would.
 */
async function rethrowAfterCleanUp(bodyError: unknown, cleanUp: () => Promise<void>): Promise<never> {
  try {
    await cleanUp();
  } catch (cleanupError) {
    throw new AggregateError([bodyError, cleanupError], `${message(bodyError)}\n(cleanup also failed: ${message(cleanupError)})`);
  }
  throw bodyError;
}

/** Runs `body`; only if it fails, runs `cleanUp` before rethrowing. */
export async function cleanUpOnFailure<T>(body: () => Promise<T>, cleanUp: () => Promise<void>): Promise<T> {
  try {
    return await body();
  } catch (bodyError) {
    return rethrowAfterCleanUp(bodyError, cleanUp);
  }
}

/** Runs `body`, then `cleanUp` whatever happened. */
export async function runThenCleanUp<T>(body: () => Promise<T>, cleanUp: () => Promise<void>): Promise<T> {
  const result = await cleanUpOnFailure(body, cleanUp);
  await cleanUp();
  return result;
}

/**
 * Runs every step in order, each even if an earlier one failed (a failed
 * step must not leave the later ones' resources behind), then throws one
 * AggregateError naming every failure, prefixed with `what`.
 */
export async function attemptEach(what: string, steps: readonly (() => unknown)[]): Promise<void> {
  const failures: unknown[] = [];
  for (const step of steps) {
    try {
      await step();
    } catch (err) {
      failures.push(err);
    }
  }
  if (failures.length > 0) throw new AggregateError(failures, `${what}: ${failures.map(message).join('; ')}`);
}
