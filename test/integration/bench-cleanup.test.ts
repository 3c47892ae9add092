/**
 * Whatever ends a bench run, nothing of it stays on the machine: a closed
 * stderr mid-run (`sockaccel bench 2>&1 | head`), a closed stdout when the
 * results are printed, SIGTERM, SIGHUP and SIGINT (the run removes what it
 * made), and SIGKILL (doctor reports the leftovers; purge, or the next bench,
 * removes them and says what). A run in progress is never touched.
 *
 * "Nothing stays" is checked on the machine, not in the bench's bookkeeping:
 * names on disk (cgroup, pin root, lock, namespaces, scratch directory, run
 * record) and the bench's child processes, sampled from /proc while it ran.
 *
 * This file's runs are recorded in a directory of its own
 * (SOCKACCEL_BENCH_RECORD_DIR): a purge or bench in another test file must
 * not sweep the dead run a test here is still looking at.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { findCgroup2Root } from '../helpers/cgroup';
import { runCli } from '../helpers/cli';
import { assertCleanedUp, leftovers, ONE_SHORT_ROUND, runNames, runningChildren, serially, SMALL, startBench, tempDir, type Proc } from '../helpers/bench';
import { RUN_TAG } from '../helpers/names';
import { privilegedTest } from '../helpers/privilege';

const privileged = privilegedTest(test);

const RECORD_DIR = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-bench-records-'));
test.after.always(() => fs.rmSync(RECORD_DIR, { recursive: true, force: true }));
const ENV = { SOCKACCEL_BENCH_RECORD_DIR: RECORD_DIR };

/** Every path (12 namespaces, 4 sidecars), long enough to be caught measuring. */
const ALL_PATHS = [...SMALL, '--rounds', '3', '--duration-ms', '300'];
const LOOPBACK = [...SMALL, '--paths', 'loopback', '--kinds', 'rr'];
const MEASURING = /round 1\/3: rr/;
/** purge's own pin root: one that does not exist, so that purge touches nothing but bench leftovers. */
const NO_PIN_ROOT = `--pin-root=/sys/fs/bpf/sockaccel-test-nothing-${RUN_TAG}`;

const sidecars = (procs: readonly Proc[]) => procs.filter((p) => p.comm === 'sidecar');
const describe = (procs: readonly Proc[]) => procs.map((p) => `${p.pid} ${p.comm}`);

/** The bench's children are all gone (and there were sidecars among them, if `expectSidecars`). */
function assertNoChildLeft(t: ExecutionContext, children: Map<string, Proc>, expectSidecars: boolean): void {
  if (expectSidecars) t.is(sidecars([...children.values()]).length, 4, `the run got as far as its sidecars: ${describe([...children.values()])}`);
  t.deepEqual(describe(runningChildren(children)), [], 'child processes still running');
}

for (const [signal, code] of [['SIGTERM', 143], ['SIGHUP', 129], ['SIGINT', 130]] as const) {
  privileged(`${signal} mid-run: exit ${code}, and the cgroup, namespaces, pins, sidecars and loadgens are gone`, async (t) => {
    const dir = tempDir(t);
    const { result, children } = await serially(async () => {
      const bench = startBench(t, [...ALL_PATHS, '--out-dir', dir], ENV);
      await bench.stderrMatches(MEASURING);
      bench.child.kill(signal);
      return { result: await bench.done, children: bench.children };
    });
    t.is(result.code, code, result.stderr);
    t.regex(result.stderr, new RegExp(`stopped by ${signal}; the cgroup, namespaces, pins and processes it made were removed`));
    t.false(fs.existsSync(path.join(dir, 'results.json')));
    assertCleanedUp(t, result.stderr, RECORD_DIR);
    assertNoChildLeft(t, children, true);
  });
}

privileged('stderr closed mid-run (`bench 2>&1 | head -1`): exit 141 and nothing left', async (t) => {
  const dir = tempDir(t);
  const { result, children } = await serially(async () => {
    const bench = startBench(t, [...ALL_PATHS, '--out-dir', dir], ENV);
    // The reader goes away after the line naming the run, while the run
    // builds its paths; the next line the bench writes meets a closed pipe.
    await bench.stderrMatches(/run sockaccel-bench-[0-9a-f]{6}:.*\n/);
    bench.child.stdout!.destroy();
    bench.child.stderr!.destroy();
    return { result: await bench.done, children: bench.children };
  });
  t.is(result.code, 141, `exit code (stderr before the pipe closed: ${result.stderr})`);
  assertCleanedUp(t, result.stderr, RECORD_DIR);
  assertNoChildLeft(t, children, false);
});

privileged('stdout closed before the results are printed (`bench | head -0`): exit 141, the results on disk, nothing left', async (t) => {
  const dir = tempDir(t);
  const result = await serially(async () => {
    const bench = startBench(t, [...LOOPBACK, ...ONE_SHORT_ROUND, '--out-dir', dir], ENV);
    bench.child.stdout!.destroy();
    return bench.done;
  });
  t.is(result.code, 141, result.stderr);
  t.regex(result.stderr, /stdout was closed \(EPIPE\) before the results were printed; they are in .*results\.json/);
  t.notRegex(result.stderr, /Error: write EPIPE|Unhandled 'error' event/);
  t.true(fs.existsSync(path.join(dir, 'results.json')));
  assertCleanedUp(t, result.stderr, RECORD_DIR);
});

interface Killed {
  readonly name: string;
  readonly pid: number;
  readonly children: Map<string, Proc>;
}

/** Starts a bench, SIGKILLs it while it measures, and returns what identifies its run. */
async function killedMidRun(t: ExecutionContext, args: readonly string[]): Promise<Killed> {
  const dir = tempDir(t);
  const bench = startBench(t, [...args, '--out-dir', dir], ENV);
  await bench.stderrMatches(MEASURING);
  bench.child.kill('SIGKILL');
  const result = await bench.done;
  t.is(result.signal, 'SIGKILL');
  const [name] = runNames(result.stderr);
  t.truthy(name, result.stderr);
  return { name: name!, pid: bench.child.pid!, children: bench.children };
}

interface DoctorCheck {
  id: string;
  status: string;
  detail: string;
  fix?: string;
}

async function doctorCheck(t: ExecutionContext, env: NodeJS.ProcessEnv = ENV): Promise<DoctorCheck> {
  const doctor = await runCli(['doctor', '--json'], { env, timeoutMs: 120_000 });
  const check = (JSON.parse(doctor.stdout) as { checks: DoctorCheck[] }).checks.find((c) => c.id === 'bench.leftovers');
  t.truthy(check, doctor.stdout);
  return check!;
}

// Serially as a whole: the next test's bench would sweep this dead run.
privileged('SIGKILL mid-run: the leftovers stay; doctor reports them, purge removes them and says what', (t) => serially(async () => {
  const killed = await killedMidRun(t, ALL_PATHS);
  const { name } = killed;
  const cgroup = path.join(findCgroup2Root(), name);
  const pinRoot = path.join('/sys/fs/bpf', name);

  // What the issue found: 12 namespaces, the cgroup with the accelerated
  // side's two sidecars in it, the pin root with its sock_ops link, and the
  // plain side's sidecars outside it.
  const left = leftovers(name, RECORD_DIR);
  t.is(left.filter((l) => l.startsWith('/run/netns/')).length, 12, left.join('\n'));
  t.true(fs.existsSync(path.join(pinRoot, 'link_sockops')), 'the sock_ops link is still pinned');
  const inCgroup = fs.readFileSync(path.join(cgroup, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean);
  t.deepEqual(inCgroup.map((pid) => fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim()).filter((c) => c === 'sidecar'), ['sidecar', 'sidecar']);
  t.is(sidecars(runningChildren(killed.children)).length, 4);

  const reported = await doctorCheck(t);
  t.is(reported.status, 'warn');
  t.regex(reported.detail, new RegExp(`bench run ${name} \\(owner pid ${killed.pid} is gone\\)`));
  t.regex(reported.detail, /12 network namespaces/);
  t.regex(reported.detail, new RegExp(`pin root ${pinRoot} \\(its sock_ops program still attached to the cgroup\\)`));
  t.regex(reported.detail, /pid \d+ sidecar in/);
  t.regex(reported.fix ?? '', /sockaccel purge/);
  t.deepEqual(leftovers(name, RECORD_DIR), left, 'doctor only reports');

  const purge = await runCli(['purge', NO_PIN_ROOT], { env: ENV });
  t.is(purge.code, 0, purge.stderr);
  const said = purge.stdout.split('\n').find((l) => l.startsWith(`removed the leftovers of bench run ${name} `));
  t.truthy(said, purge.stdout);
  for (const what of [/\d+ processes \(.*pid \d+ sidecar in /, new RegExp(`pin root ${pinRoot}`), new RegExp(`cgroup ${cgroup}`), /12 network namespaces/, /lock file/]) t.regex(said ?? '', what);
  t.deepEqual(leftovers(name, RECORD_DIR), []);
  assertNoChildLeft(t, killed.children, true);
  t.is((await doctorCheck(t)).status, 'pass');
}));

privileged('SIGKILL mid-run: the next bench removes the leftovers first and says so', async (t) => {
  const dir = tempDir(t);
  const { killed, next } = await serially(async () => {
    const killed = await killedMidRun(t, [...LOOPBACK, '--rounds', '3', '--duration-ms', '300']);
    t.true(leftovers(killed.name, RECORD_DIR).length >= 3, 'cgroup, pin root and record left');
    const next = await startBench(t, [...LOOPBACK, ...ONE_SHORT_ROUND, '--out-dir', dir], ENV).done;
    return { killed, next };
  });
  t.is(next.code, 0, next.stderr);
  t.regex(next.stderr, new RegExp(`bench: removed the leftovers of bench run ${killed.name} \\(owner pid ${killed.pid} is gone\\): .*pin root`));
  t.deepEqual(leftovers(killed.name, RECORD_DIR), []);
  assertNoChildLeft(t, killed.children, false);
  assertCleanedUp(t, next.stderr, RECORD_DIR);
});

privileged('a run in progress is not a leftover: purge and doctor leave it alone', async (t) => {
  const dir = tempDir(t);
  const { result, during, purge, reported } = await serially(async () => {
    // Long runs: it must still be measuring when doctor and purge are done.
    const bench = startBench(t, [...LOOPBACK, '--rounds', '3', '--duration-ms', '5000', '--out-dir', dir], ENV);
    const [name] = runNames(await bench.stderrMatches(MEASURING));
    const reported = await doctorCheck(t);
    const purge = await runCli(['purge', NO_PIN_ROOT], { env: ENV });
    // Its scratch directory aside (a plain file tree, of no interest here).
    const during = leftovers(name!, RECORD_DIR).filter((l) => !l.startsWith(path.join(os.tmpdir(), name!)));
    bench.child.kill('SIGINT');
    return { result: await bench.done, during, purge, reported };
  });
  t.is(reported.status, 'pass', reported.detail);
  t.is(purge.code, 0, purge.stderr);
  t.notRegex(purge.stdout, /bench run/);
  // Its cgroup, pin root, lock and record were all still there after the purge.
  t.is(during.length, 4, during.join('\n'));
  t.is(result.code, 130, result.stderr);
  assertCleanedUp(t, result.stderr, RECORD_DIR);
});

privileged('a run record someone other than root wrote is refused, not acted on', async (t) => {
  const dir = tempDir(t, 'sockaccel-bench-records-');
  const me = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')[19];
  // It names this test process as a child to kill: the sweeper must not believe it.
  const record = path.join(dir, 'sockaccel-bench-0f0f0f.json');
  fs.writeFileSync(record, JSON.stringify({ runId: 'sockaccel-bench-0f0f0f', owner: { pid: 999_999_999, startTime: 1 }, startedAt: '', children: [{ pid: process.pid, startTime: Number(me), description: 'x' }] }));
  fs.chownSync(record, 65534, 65534);
  const env = { SOCKACCEL_BENCH_RECORD_DIR: dir };
  const purge = await runCli(['purge', NO_PIN_ROOT], { env });
  t.not(purge.code, 0);
  t.regex(purge.stderr, /sockaccel-bench-0f0f0f\.json belongs to uid 65534, not root: refusing to act on it/);
  t.is((await doctorCheck(t, env)).status, 'fail');
  t.true(fs.existsSync(record));
});
