/**
 * Leftovers of dead bench runs (a bench killed with SIGKILL): processes, a
 * scratch cgroup with a sock_ops program attached, pins and namespaces that
 * nothing will remove by itself. Doctor only reports them; purge (or the
 * next bench) removes them. Runs still in progress are not leftovers.
 */
import { describeDeadRun, findDeadRuns, type DeadRun } from '../bench/leftovers';
import { Check, pass, warn } from './check';

export function benchLeftoversCheck(runs: readonly DeadRun[] = findDeadRuns()): Check {
  const title = 'leftovers of dead bench runs';
  if (runs.length === 0) return pass('bench.leftovers', title, 'none');
  return warn('bench.leftovers', title, runs.map(describeDeadRun).join('\n       '), 'sockaccel purge removes them (so does the next sockaccel bench)');
}
