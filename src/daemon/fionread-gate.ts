/**
 * The start-up FIONREAD check, part of the probe stage: before anything is
 * loaded or attached, the daemon builds a real accelerated pair in a scratch
 * sockhash of its own (src/kernel/fionread.ts) and looks at FIONREAD while
 * redirected bytes wait.
 *
 * Where FIONREAD does not count them (Linux 6.1), every accelerated socket
 * looks empty to a reader that sizes its reads with FIONREAD, and such a
 * reader can stall. sockaccel must never make an application stall, so the
 * default is to refuse to start (KernelHazardError, exit 71: systemd does not
 * restart it) with a message naming the opt-in; with `fionreadHazard:
 * accept` the daemon starts and says loudly what it accepted. A probe that
 * cannot tell is treated like a failing one: starting blind is the one
 * outcome that can hurt applications.
 */
import type { Logger } from 'pino';
import type { FionreadHazardPolicy } from '../config/config';
import { KernelHazardError, SockaccelError } from '../common/errors';
import { describePaired, probePaired, type PairedVerdict } from '../kernel/fionread';

const OPT_IN = 'fionreadHazard: "accept" in the configuration file, SOCKACCEL_FIONREAD_HAZARD=accept or --fionread-hazard=accept';

export interface GateOutcome {
  readonly level: 'info' | 'warn';
  readonly message: string;
}

/**
 * The decision, without side effects: an outcome to log when the daemon may
 * go on, a KernelHazardError when it must not.
 */
export function fionreadGate(verdict: PairedVerdict, policy: FionreadHazardPolicy, kernel: string): GateOutcome {
  if (verdict.kind === 'counted') {
    return { level: 'info', message: `FIONREAD counts redirected bytes: ${describePaired(verdict.measurement)}` };
  }
  const problem =
    verdict.kind === 'blind'
      ? `on this kernel (${kernel}) FIONREAD does not count redirected bytes: ${describePaired(verdict.measurement)}. ` +
        'Every accelerated socket would look empty to a reader that sizes its reads with FIONREAD, and such a reader can stall'
      : `the start-up FIONREAD probe could not tell whether this kernel (${kernel}) counts redirected bytes: ${verdict.reason}`;
  if (policy === 'accept') {
    return {
      level: 'warn',
      message: `${problem}. Accelerating anyway, as fionreadHazard is "accept": exclude the ports of servers that size reads with FIONREAD (excludePorts)`,
    };
  }
  throw new KernelHazardError(`refusing to accelerate: ${problem}`, {
    hint:
      `nothing was attached and connections stay plain TCP. To accelerate anyway, set ${OPT_IN} ` +
      '(first exclude the ports of servers that size reads with FIONREAD; see "FIONREAD" in the README), or use a kernel whose FIONREAD counts redirected bytes (6.12 or later)',
  });
}

/**
 * Runs the paired probe and applies the gate; throws KernelHazardError to
 * refuse. The one-sided case is doctor's (kernel.fionread): pairing keeps
 * sockaccel's sockets out of it on every kernel, so start-up does not pay
 * for it.
 */
export async function checkFionread(objectDir: string, policy: FionreadHazardPolicy, kernel: string, log: Logger): Promise<void> {
  let verdict: PairedVerdict;
  try {
    verdict = await probePaired(objectDir);
  } catch (err) {
    // A missing, corrupt or rejected probe object is no verdict on the kernel:
    // report it as what it is (libbpf 70, verifier 65), not as a hazard.
    if (err instanceof SockaccelError) throw err;
    verdict = { kind: 'inconclusive', reason: `the probe failed: ${(err as Error).message}` };
  }
  const outcome = fionreadGate(verdict, policy, kernel);
  log[outcome.level]({ fionread: verdict }, outcome.message);
}
