/**
 * Running `sockaccel bench` from the built CLI in a test, and checking what a
 * run left on the machine, independently of the bench's own bookkeeping:
 * names on disk (cgroup, pin root, namespaces, lock, scratch directory) and
 * the processes the bench had as children, sampled from /proc while it ran.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { RECORD_DIR } from '../../src/bench/run-record';
import { AlreadyRunningError } from '../../src/common/errors';
import { acquireInstanceLock, lockPath, type InstanceLock } from '../../src/daemon/instance-lock';
import { findCgroup2Root } from './cgroup';
import { CLI } from './cli';
import { waitFor } from './wait-for';

export const SMALL = ['--quick', '--rr-sizes', '64', '--stream-sizes', '131072', '--pinning', 'same-cpu'];
export const ONE_SHORT_ROUND = ['--rounds', '1', '--duration-ms', '80'];

/**
 * The instance lock of a pin root nobody uses, taken by whichever test runs
 * a bench: flock, so that a test that dies releases it.
 */
const BENCH_TESTS_LOCK = '/sys/fs/bpf/sockaccel-bench-tests';

/** Takes the cross-process bench test lock, waiting for other test files' benches to end. */
function benchTestsLock(): Promise<InstanceLock> {
  return waitFor(
    'the other test files\' benches to end',
    () => {
      try {
        return acquireInstanceLock(BENCH_TESTS_LOCK, 'bench test');
      } catch (err) {
        if (err instanceof AlreadyRunningError) return undefined;
        throw err;
      }
    },
    { timeoutMs: 10 * 60_000, intervalMs: 200 },
  );
}

// The bench pins to CPUs and measures, and a run squeezed by another may
// measure an empty window: never two at once, in this file or (by a lock)
// in another test file.
let queue: Promise<unknown> = Promise.resolve();
export function serially<T>(fn: () => Promise<T>): Promise<T> {
  const locked = async () => {
    const lock = await benchTestsLock();
    try {
      return await fn();
    } finally {
      lock.release();
    }
  };
  const run = queue.then(locked, locked);
  queue = run.catch(() => undefined);
  return run;
}

export interface BenchRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** A process by pid and start time (/proc/<pid>/stat field 22): a reused pid is someone else. */
export interface Proc {
  readonly pid: number;
  readonly startTime: string;
  readonly comm: string;
}

function statOf(pid: number): Proc | undefined {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return undefined;
    return { pid, startTime: fields[19]!, comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) };
  } catch {
    return undefined;
  }
}

/** True while that very process still runs (not a zombie, not a new process under its pid). */
export function stillRuns(p: Proc): boolean {
  return statOf(p.pid)?.startTime === p.startTime;
}

function childrenOf(pid: number): Proc[] {
  try {
    return fs
      .readdirSync(`/proc/${pid}/task`)
      .flatMap((tid) => fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' '))
      .filter(Boolean)
      .flatMap((child) => statOf(Number(child)) ?? []);
  } catch {
    return [];
  }
}

export interface StartedBench {
  readonly child: ChildProcess;
  readonly done: Promise<BenchRun>;
  /** Every child process seen while the bench ran, sampled every 20 ms (long-lived ones, such as sidecars, for sure). */
  readonly children: Map<string, Proc>;
  /** Resolves once stderr matches `pattern` (rejects if the bench exits first). */
  stderrMatches(pattern: RegExp): Promise<string>;
}

/** The scratch names a bench run announces on stderr ("run sockaccel-bench-xxxxxx: ..."). */
export function runNames(stderr: string): string[] {
  return [...new Set([...stderr.matchAll(/run (sockaccel-bench-[0-9a-f]{6}):/g)].map((m) => m[1]!))];
}

/** Everything on disk a run named `name` may have left: cgroup, pin root, lock file, namespaces, scratch directory, run record in `recordDir`. */
export function leftovers(name: string, recordDir = RECORD_DIR): string[] {
  const lock = lockPath(path.join('/sys/fs/bpf', name));
  const candidates = [path.join(findCgroup2Root(), name), path.join('/sys/fs/bpf', name), lock, path.join(recordDir, `${name}.json`)];
  const named = (dir: string) => (fs.existsSync(dir) ? fs.readdirSync(dir).filter((n) => n.startsWith(name)).map((n) => path.join(dir, n)) : []);
  return [...candidates.filter((p) => fs.existsSync(p)), ...named('/run/netns'), ...named(os.tmpdir())];
}

/** The sampled children that still run. */
export function runningChildren(children: Map<string, Proc>): Proc[] {
  return [...children.values()].filter(stillRuns);
}

/**
 * Runs the CLI. If the test ends first (failure, timeout), teardown stops the
 * bench with SIGINT (its own cleanup), then SIGKILL, and removes by itself
 * whatever its run left behind.
 */
export function startBench(t: ExecutionContext, args: readonly string[], env: NodeJS.ProcessEnv = {}): StartedBench {
  const child = spawn(process.execPath, [CLI, 'bench', ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let stdout = '';
  let stderr = '';
  const children = new Map<string, Proc>();
  const sample = () => {
    for (const p of childrenOf(child.pid!)) children.set(`${p.pid}/${p.startTime}`, p);
  };
  const sampler = setInterval(sample, 20);
  const listeners = new Set<() => void>();
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
    sample();
    for (const l of listeners) l();
  });
  const done = new Promise<BenchRun>((resolve) =>
    child.on('close', (code, signal) => {
      clearInterval(sampler);
      for (const l of listeners) l();
      resolve({ code, signal, stdout, stderr });
    }),
  );
  const stderrMatches = (pattern: RegExp) =>
    new Promise<string>((resolve, reject) => {
      const check = () => {
        if (pattern.test(stderr)) {
          listeners.delete(check);
          resolve(stderr);
        } else if (child.exitCode !== null || child.signalCode !== null) {
          listeners.delete(check);
          reject(new Error(`the bench exited before its stderr matched ${pattern}:\n${stderr}`));
        }
      };
      listeners.add(check);
      check();
    });
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const exited = () => child.exitCode !== null || child.signalCode !== null;
      const stopped = await waitFor('the bench to stop after SIGINT', exited, { timeoutMs: 20_000 }).then(() => true, () => false);
      if (!stopped) {
        child.kill('SIGKILL');
        await done;
      }
    }
    for (const p of runningChildren(children)) process.kill(p.pid, 'SIGKILL');
    for (const name of runNames(stderr)) await forceRemove(name, env.SOCKACCEL_BENCH_RECORD_DIR);
  });
  return { child, done, children, stderrMatches };
}

async function forceRemove(name: string, recordDir: string | undefined): Promise<void> {
  const cgroupKill = path.join(findCgroup2Root(), name, 'cgroup.kill');
  if (fs.existsSync(cgroupKill)) fs.writeFileSync(cgroupKill, '1');
  for (const leftover of leftovers(name, recordDir)) {
    if (leftover.startsWith('/run/netns/')) execFileSync('ip', ['netns', 'del', path.basename(leftover)]);
    // rmdir answers EBUSY until the killed members are released.
    else if (leftover.startsWith(findCgroup2Root())) await waitFor(`rmdir ${leftover}`, () => (fs.rmdirSync(leftover), true));
    else fs.rmSync(leftover, { recursive: true, force: true });
  }
}

/** One run was announced, and it left nothing on disk. */
export function assertCleanedUp(t: ExecutionContext, stderr: string, recordDir?: string): string {
  const names = runNames(stderr);
  t.is(names.length, 1, `one run name announced on stderr:\n${stderr}`);
  for (const name of names) t.deepEqual(leftovers(name, recordDir), [], `run ${name} left these behind`);
  return names[0]!;
}

export function tempDir(t: ExecutionContext, prefix = 'sockaccel-bench-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}
