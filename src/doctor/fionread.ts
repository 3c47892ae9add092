/**
 * doctor's view of the FIONREAD hazard, from the live probes in
 * src/kernel/fionread.ts:
 *
 * - kernel.fionread_paired: a real accelerated pair (both ends in a scratch
 *   sockhash, sends redirected). Where FIONREAD does not count redirected
 *   bytes (Linux 6.1), every accelerated socket looks empty; `run` refuses
 *   there unless fionreadHazard is "accept" (src/daemon/fionread-gate.ts),
 *   so this check fails or warns exactly as the daemon would decide.
 * - kernel.fionread: one socket in a sockhash receiving plain TCP (6.18.44
 *   reads 0). sockaccel's pairing keeps its sockets out of that case; it
 *   matters for other sockmap users on the node.
 */
import type { FionreadHazardPolicy } from '../config/config';
import { fionreadGate } from '../daemon/fionread-gate';
import { measureOneSided, probePaired, type OneSidedMeasurement, type PairedVerdict } from '../kernel/fionread';
import { SockaccelError } from '../common/errors';
import { Check, fail, pass, warn } from './check';

const ROOT_FIX = 'run doctor as root (the probe loads a BPF program and creates a sockhash: CAP_BPF and CAP_NET_ADMIN)';
const ONE_SIDED_TITLE = 'FIONREAD on a socket in a sockhash receiving plain TCP';
const PAIRED_TITLE = 'FIONREAD on an accelerated pair (redirected bytes waiting)';

export function fionreadCheck(m: OneSidedMeasurement): Check {
  if (!m.overTcp) {
    return warn(
      'kernel.fionread',
      ONE_SIDED_TITLE,
      'inconclusive: a running sockmap program (a sockaccel whose cgroup holds doctor?) took the probe\'s connection and redirected its bytes',
      'run doctor from a cgroup outside the accelerated one to see this case',
    );
  }
  if (m.queued !== m.bytes) {
    return warn('kernel.fionread', ONE_SIDED_TITLE, `inconclusive: ${m.queued} of ${m.bytes} bytes arrived`, 'run doctor again on a less busy moment');
  }
  if (m.inMap === m.queued) {
    return pass('kernel.fionread', ONE_SIDED_TITLE, `FIONREAD ${m.inMap} with ${m.queued} bytes queued over plain TCP: correct`);
  }
  return warn(
    'kernel.fionread',
    ONE_SIDED_TITLE,
    `FIONREAD ${m.inMap} while ${m.queued} bytes were queued over plain TCP. ` +
      'Consequence: a socket in a sockhash whose data does not come through the redirect looks empty, and ' +
      'applications that size reads with FIONREAD (nginx, Java, .NET) stall. sockaccel avoids it by pairing: ' +
      'a socket enters the map only together with its peer, so all its data is redirected, and a client whose ' +
      'server never paired leaves the map on the first plain segment, before that data is queued.',
    'nothing to do for sockaccel; other sockmap users on this node (see the program checks) can be hit. A kernel with the upstream fix removes the hazard',
  );
}

/** The daemon's own decision (fionreadGate), as a check: refuse → fail, accept → warn. */
export function fionreadPairedCheck(verdict: PairedVerdict, policy: FionreadHazardPolicy, kernel: string): Check {
  const id = 'kernel.fionread_paired';
  try {
    const outcome = fionreadGate(verdict, policy, kernel);
    if (outcome.level === 'info') return pass(id, PAIRED_TITLE, outcome.message);
    return warn(id, PAIRED_TITLE, outcome.message, 'keep servers that size reads with FIONREAD out of acceleration (excludePorts), or use Linux 6.12 or later');
  } catch (err) {
    if (!(err instanceof SockaccelError)) throw err;
    return fail(id, PAIRED_TITLE, `${err.message}; \`sockaccel run\` refuses to start here (exit ${err.exitCode})`, err.hint ?? '');
  }
}

export async function fionreadProbeChecks(objectDir: string, policy: FionreadHazardPolicy, kernel: string): Promise<Check[]> {
  const checks: Check[] = [];
  try {
    checks.push(fionreadPairedCheck(await probePaired(objectDir), policy, kernel));
  } catch (err) {
    checks.push(fail('kernel.fionread_paired', PAIRED_TITLE, `the probe could not run: ${(err as Error).message}`, ROOT_FIX));
  }
  try {
    checks.push(fionreadCheck(await measureOneSided()));
  } catch (err) {
    checks.push(fail('kernel.fionread', ONE_SIDED_TITLE, `the probe could not run: ${(err as Error).message}`, ROOT_FIX));
  }
  return checks;
}
