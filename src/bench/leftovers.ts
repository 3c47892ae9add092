/**
 * What dead bench runs left behind, and its removal. A run is dead when the
 * owner in its record (run-record.ts) no longer runs: killed with SIGKILL,
 * or it ended with its own cleanup incomplete. A live run is never touched,
 * whoever started it: other engineers run benches and tests on this machine
 * at the same time. `sockaccel bench` removes dead runs' leftovers before it
 * starts, `sockaccel purge` removes them, `sockaccel doctor` reports them.
 *
 * What a dead run may have left, all found by its run id:
 *  - processes it recorded, still running under the same pid and start time,
 *    and any process in its scratch cgroup (only the run puts processes there);
 *  - its pin root, with the sock_ops link still attached to the scratch cgroup;
 *  - the scratch cgroup, its network namespaces (`<run id>-*`), its Unix
 *    socket directory, and its daemon's instance lock file.
 */
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { attemptEach } from '../common/cleanup';
import { AlreadyRunningError } from '../common/errors';
import { detachSockops } from '../daemon/loader';
import { acquireInstanceLock, lockPath } from '../daemon/instance-lock';
import { deleteAllNetns } from '../fixtures/netns';
import { linkPinPath } from '../kernel/pins';
import { isRunning, readRunRecord, RECORD_DIR, recordedRunIds, recordPath, type ChildRecord, type ProcessIdentity, type RunRecord } from './run-record';
import { removeCgroup, scratchLocations } from './scratch';

const NETNS_DIR = '/run/netns';
const KILL_WAIT_MS = 10_000;

export interface DeadRun {
  readonly runId: string;
  /** Its record file. */
  readonly record: string;
  readonly owner: ProcessIdentity;
  /** Recorded children that still run. */
  readonly processes: readonly ChildRecord[];
  /** The scratch cgroup, if it still exists, with the pids in it. */
  readonly cgroup: { readonly path: string; readonly pids: readonly number[] } | undefined;
  /** The pin root, if it still exists, and whether its sock_ops link (on the scratch cgroup) is still pinned. */
  readonly pinRoot: { readonly path: string; readonly sockopsLink: boolean } | undefined;
  readonly netns: readonly string[];
  readonly scratchDir: string | undefined;
  /** The run's daemon's instance lock file, if it still exists. */
  readonly lockFile: string | undefined;
}

function cgroupPids(dir: string): number[] {
  return fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
}

/** What the dead run `record` (recorded in `dir`) left, as of now. */
function survey(record: RunRecord, dir: string): DeadRun {
  const { runId } = record;
  const { cgroup, pinRoot } = scratchLocations(runId);
  const netns = fs.existsSync(NETNS_DIR) ? fs.readdirSync(NETNS_DIR).filter((n) => n.startsWith(`${runId}-`)).sort() : [];
  // Only a directory named after the run: the record's path is not trusted further than that.
  const scratchDir = record.scratchDir !== undefined && path.basename(record.scratchDir).startsWith(runId) && fs.existsSync(record.scratchDir) ? record.scratchDir : undefined;
  const lockFile = lockPath(pinRoot);
  return {
    runId,
    record: recordPath(runId, dir),
    owner: record.owner,
    processes: record.children.filter(isRunning),
    cgroup: fs.existsSync(cgroup) ? { path: cgroup, pids: cgroupPids(cgroup) } : undefined,
    pinRoot: fs.existsSync(pinRoot) ? { path: pinRoot, sockopsLink: fs.existsSync(linkPinPath(pinRoot, 'sockops')) } : undefined,
    netns,
    scratchDir,
    lockFile: fs.existsSync(lockFile) ? lockFile : undefined,
  };
}

/** Every run recorded in `dir` whose owner is gone, with what it left (possibly nothing but its record). */
export function findDeadRuns(dir = RECORD_DIR): DeadRun[] {
  return recordedRunIds(dir).flatMap((runId) => {
    const record = readRunRecord(runId, dir);
    return record === undefined || isRunning(record.owner) ? [] : [survey(record, dir)];
  });
}

/** The leftovers as a list a person can check: what, and where. */
function items(run: DeadRun): string[] {
  const list: string[] = [];
  if (run.processes.length > 0) list.push(`${run.processes.length} processes (${run.processes.map((p) => `pid ${p.pid} ${p.description}`).join(', ')})`);
  const strays = run.cgroup?.pids.filter((pid) => !run.processes.some((p) => p.pid === pid)) ?? [];
  if (strays.length > 0) list.push(`${strays.length} other processes in its cgroup (pids ${strays.join(', ')})`);
  if (run.pinRoot !== undefined) list.push(`pin root ${run.pinRoot.path}${run.pinRoot.sockopsLink ? ' (its sock_ops program still attached to the cgroup)' : ''}`);
  if (run.cgroup !== undefined) list.push(`cgroup ${run.cgroup.path}`);
  if (run.netns.length > 0) list.push(`${run.netns.length} network namespaces (${run.netns.join(', ')})`);
  if (run.scratchDir !== undefined) list.push(`directory ${run.scratchDir}`);
  if (run.lockFile !== undefined) list.push(`lock file ${run.lockFile}`);
  return list;
}

/** One line: the run, its dead owner, and what it left. */
export function describeDeadRun(run: DeadRun): string {
  const left = items(run);
  return `bench run ${run.runId} (owner pid ${run.owner.pid} is gone): ${left.length > 0 ? left.join('; ') : 'nothing but its record'}`;
}

async function waitUntilGone(processes: readonly ProcessIdentity[]): Promise<void> {
  const deadline = Date.now() + KILL_WAIT_MS;
  for (;;) {
    const left = processes.filter(isRunning);
    if (left.length === 0) return;
    if (Date.now() > deadline) throw new Error(`processes ${left.map((p) => p.pid).join(', ')} still run ${KILL_WAIT_MS} ms after SIGKILL`);
    await sleep(50);
  }
}

/**
 * Ends the run's processes: the recorded ones that still run under the same
 * pid and start time, and whatever is in its scratch cgroup (cgroup.kill,
 * Linux 5.14+, kills them atomically; older kernels get one signal per pid).
 */
async function killProcesses(run: DeadRun): Promise<void> {
  const kill = (pid: number) => {
    try {
      process.kill(pid, 'SIGKILL');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
    }
  };
  for (const p of run.processes) if (isRunning(p)) kill(p.pid);
  if (run.cgroup !== undefined && run.cgroup.pids.length > 0) {
    const killFile = path.join(run.cgroup.path, 'cgroup.kill');
    if (fs.existsSync(killFile)) fs.writeFileSync(killFile, '1');
    else cgroupPids(run.cgroup.path).forEach(kill);
  }
  // The cgroup's members are waited for by removeCgroup (rmdir answers EBUSY until they are gone).
  await waitUntilGone(run.processes);
}

/** Detaches the sock_ops link (whatever else holds it), then unpins everything under the pin root. */
function removePinRoot(pinRoot: string): void {
  detachSockops(pinRoot);
  fs.rmSync(pinRoot, { recursive: true, force: true });
}

/**
 * Removes everything the dead run left, then its record; says what it
 * removed. Holds the run's instance lock meanwhile, so that two sweepers
 * (a bench and a purge started together) do not both work on it; releasing
 * it removes the dead daemon's lock file. Every step is attempted; if one
 * fails, the record stays for the next sweep and the error names what is left.
 */
export async function removeDeadRun(found: DeadRun, say: (line: string) => void): Promise<void> {
  let lock;
  try {
    lock = acquireInstanceLock(scratchLocations(found.runId).pinRoot, 'bench cleanup');
  } catch (err) {
    if (!(err instanceof AlreadyRunningError)) throw err;
    say(`bench run ${found.runId}: another process is removing its leftovers`);
    return;
  }
  try {
    // Another sweeper may have finished it between our look and our lock.
    const dir = path.dirname(found.record);
    const record = readRunRecord(found.runId, dir);
    if (record === undefined || isRunning(record.owner)) return;
    // The lock file is ours now: it was a leftover only if it was there before we locked.
    const run = { ...survey(record, dir), lockFile: found.lockFile };
    const { pinRoot: pins, cgroup, scratchDir } = run;
    // Processes first: nothing may use the pins, the cgroup or the namespaces while they go.
    await attemptEach(`could not remove everything bench run ${run.runId} left (kept ${run.record} for the next try)`, [
      () => killProcesses(run),
      () => pins !== undefined && removePinRoot(pins.path),
      () => cgroup !== undefined && removeCgroup(cgroup.path),
      () => deleteAllNetns(run.netns),
      () => scratchDir !== undefined && fs.rmSync(scratchDir, { recursive: true, force: true }),
    ]);
    fs.rmSync(run.record, { force: true });
    say(`removed the leftovers of ${describeDeadRun(run)}`);
  } finally {
    lock.release();
  }
}

/** Removes the leftovers of every dead run, saying what it removed; one run that resists does not keep the others. */
export async function removeDeadRuns(say: (line: string) => void): Promise<void> {
  await attemptEach('leftovers of dead bench runs remain', findDeadRuns().map((run) => () => removeDeadRun(run, say)));
}
