import { randomBytes } from 'node:crypto';

/**
 * Tag shared by every cgroup and namespace this test process creates. AVA runs
 * test files in parallel workers of one process, so the pid alone cannot tell
 * our leftovers from a sibling file's live resources; a random tag per module
 * instance (one per worker) can.
 */
export const RUN_TAG = randomBytes(3).toString('hex');

/** `<prefix><RUN_TAG>-<random>`: unique on this machine, attributable to this run. */
export function uniqueName(prefix: string): string {
  return `${prefix}${RUN_TAG}-${randomBytes(3).toString('hex')}`;
}
