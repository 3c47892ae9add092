/**
 * `sockaccel doctor`: everything the daemon depends on, checked in the order
 * an operator would ask: may it run here, is it safe on this kernel, does
 * anything else touch the same sockets, and is it working right now.
 * Read-only: the probes use scratch maps of their own and never write to the
 * daemon's.
 */
import os from 'node:os';
import { loadConfig, type SockaccelConfig } from '../config/config';
import type { ParsedCommandLine } from '../cli/cli-args';
import { EXIT_CODES } from '../common/errors';
import { resolveCgroupPath } from '../kernel/cgroup';
import { Check, DoctorReport, fail, formatReport, guarded, summarize } from './check';
import { localEndpointsCheck } from './local-endpoints';
import { readNodeNetwork } from '../daemon/pod-addresses';
import { bpffsCheck, cgroupCheck, privilegeCheck } from './environment';
import { kernelChecks, programLoadCheck } from './kernel';
import { atLeast, parseKernelVersion } from '../kernel/version';
import { fionreadProbeChecks } from './fionread';
import { kernelRowCheck } from './kernel-table';
import { DEFAULT_OBJECT_DIR } from '../kernel/bpf-object';
import { effectiveSockops, loadedSkMsgPrograms, skMsgNeighboursCheck, sockopsNeighboursCheck } from './neighbours';
import { benchLeftoversCheck } from './bench-leftovers';
import { frozenMapsCheck, linkChecks, pinCompatibilityCheck, pinPermissionsCheck, pinRootCheck } from './daemon-state';

const ROOT_FIX = 'run doctor as root';

type DoctorConfig = Pick<SockaccelConfig, 'pinRoot' | 'cgroupPath' | 'objectDir' | 'localCidrs' | 'fionreadHazard'>;

export async function runDoctor(config: DoctorConfig): Promise<DoctorReport> {
  const objectDir = config.objectDir || undefined;
  const kernel = parseKernelVersion(os.release());
  const checks: Check[] = [
    privilegeCheck(),
    kernelRowCheck(kernel, os.release()),
    ...guarded('kernel.features', 'kernel features', ROOT_FIX, () => kernelChecks()),
    ...guarded('kernel.programs_load', 'BPF programs pass the verifier', ROOT_FIX, () => programLoadCheck(objectDir)),
    ...(await fionreadProbeChecks(objectDir ?? DEFAULT_OBJECT_DIR, config.fionreadHazard, os.release())),
    ...guarded('env.bpffs', 'bpffs', ROOT_FIX, () => bpffsCheck(config.pinRoot)),
    ...guarded('env.cgroup', 'cgroup v2', ROOT_FIX, () => cgroupCheck(config.cgroupPath)),
    await localEndpointsCheckOf(config.localCidrs),
  ];

  let cgroupPath: string | null = null;
  try {
    cgroupPath = resolveCgroupPath(config.cgroupPath);
  } catch {
    // reported by the cgroup check above; the checks that need it are skipped
  }

  const pins = pinRootCheck(config.pinRoot);
  checks.push(pins);
  let ours = new Set<number>();
  if (pins.status === 'pass') {
    checks.push(...guarded('pins.permissions', 'pin directory and pins are root-only', ROOT_FIX, () => pinPermissionsCheck(config.pinRoot)));
    checks.push(...guarded('pins.compatible', 'pinned maps match this build', ROOT_FIX, () => pinCompatibilityCheck(config.pinRoot, objectDir)));
    checks.push(...guarded('pins.frozen', 'program-only maps refuse syscall writes', ROOT_FIX, () => frozenMapsCheck(config.pinRoot)));
    if (cgroupPath !== null) {
      const target = cgroupPath;
      const sockmapLinks = kernel !== null && atLeast(kernel, '6.10');
      checks.push(
        ...guarded('links', 'links', ROOT_FIX, () => {
          const state = linkChecks(config.pinRoot, target, sockmapLinks);
          ours = state.programIds;
          return state.checks;
        }),
      );
    }
  }

  if (cgroupPath !== null) {
    const target = cgroupPath;
    checks.push(...guarded('programs.sockops', 'other sock_ops programs on the cgroup path', ROOT_FIX, () => sockopsNeighboursCheck(effectiveSockops(target), ours)));
  }
  checks.push(...guarded('programs.sk_msg', 'other sk_msg programs loaded', 'run doctor as root (listing programs needs CAP_SYS_ADMIN)', () => skMsgNeighboursCheck(loadedSkMsgPrograms(), ours)));
  checks.push(...guarded('bench.leftovers', 'leftovers of dead bench runs', ROOT_FIX, () => benchLeftoversCheck()));
  return summarize(checks);
}

async function localEndpointsCheckOf(localCidrs: readonly string[]): Promise<Check> {
  try {
    return localEndpointsCheck(localCidrs, await readNodeNetwork());
  } catch (err) {
    return fail('network.local_endpoints', 'pod addresses on this node', `cannot read the interfaces and routes: ${(err as Error).message}`, 'install iproute2 (the `ip` command)');
  }
}

/**
 * Exit status 1 when any check failed, so that doctor can gate a rollout;
 * 77 (ERR_PRIVILEGE) when doctor lacked a privilege for some check, since
 * then its verdict is unknown rather than bad; the report is printed in full
 * either way.
 */
export async function runDoctorCommand(cmd: ParsedCommandLine): Promise<number> {
  const report = await runDoctor(loadConfig({ argv: cmd.configArgv }));
  process.stdout.write(cmd.commandFlags.json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  if (!report.complete) {
    const ids = report.checks.filter((c) => c.missingPrivilege === true).map((c) => c.id);
    process.stderr.write(`sockaccel: doctor lacks the privilege for ${ids.join(', ')}, so its answer is incomplete; run it as root\n`);
    return EXIT_CODES.ERR_PRIVILEGE.exitCode;
  }
  return report.ok ? 0 : 1;
}
