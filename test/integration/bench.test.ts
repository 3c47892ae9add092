/**
 * `sockaccel bench` end to end, from the built CLI, with extra-small
 * settings: the JSON schema, the chart, the integrity gate (an accelerated
 * side that is not accelerated must fail loudly) and cleanup after success,
 * failure and SIGINT. No timing thresholds: the numbers are not under test.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { lockPath } from '../../src/daemon/instance-lock';
import { findCgroup2Root } from '../helpers/cgroup';
import { privilegedTest } from '../helpers/privilege';
import { waitFor } from '../helpers/wait-for';

const privileged = privilegedTest(test);
const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');
const SMALL = ['--quick', '--rr-sizes', '64', '--stream-sizes', '131072', '--pinning', 'same-cpu'];
const ONE_SHORT_ROUND = ['--rounds', '1', '--duration-ms', '80'];

// The bench pins to CPUs and measures: never two at once, whatever ava's concurrency.
let queue: Promise<unknown> = Promise.resolve();
function serially<T>(fn: () => Promise<T>): Promise<T> {
  const run = queue.then(fn, fn);
  queue = run.catch(() => undefined);
  return run;
}

interface BenchRun {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** The scratch names a bench run announces on stderr ("run sockaccel-bench-xxxxxx: ..."). */
function runNames(stderr: string): string[] {
  return [...new Set([...stderr.matchAll(/run (sockaccel-bench-[0-9a-f]{6}):/g)].map((m) => m[1]!))];
}

/** Everything a run named `name` may have left: cgroup, pin root, lock file, namespaces. */
function leftovers(name: string): string[] {
  const lock = lockPath(path.join('/sys/fs/bpf', name));
  const candidates = [path.join(findCgroup2Root(), name), path.join('/sys/fs/bpf', name)];
  const netns = fs.existsSync('/run/netns') ? fs.readdirSync('/run/netns').filter((n) => n.startsWith(`${name}-`)).map((n) => `/run/netns/${n}`) : [];
  return [...candidates.filter((p) => fs.existsSync(p)), ...netns, ...(fs.existsSync(lock) ? [lock] : [])];
}

/**
 * Runs the CLI. If the test ends first (failure, timeout), teardown stops the
 * bench with SIGINT (its own cleanup), then SIGKILL, and removes whatever its
 * run left behind.
 */
function startBench(t: ExecutionContext, args: string[]): { child: ChildProcess; done: Promise<BenchRun> } {
  const child = spawn(process.execPath, [CLI, 'bench', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const done = new Promise<BenchRun>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGINT');
      const exited = () => child.exitCode !== null || child.signalCode !== null;
      const stopped = await waitFor('the bench to stop after SIGINT', exited, { timeoutMs: 20_000 }).then(() => true, () => false);
      if (!stopped) child.kill('SIGKILL');
    }
    await done;
    for (const name of runNames(stderr)) forceRemove(name);
  });
  return { child, done };
}

function forceRemove(name: string): void {
  for (const leftover of leftovers(name)) {
    if (leftover.startsWith('/run/netns/')) fs.rmSync(leftover, { force: true });
    else if (leftover.startsWith(findCgroup2Root())) fs.rmdirSync(leftover);
    else fs.rmSync(leftover, { recursive: true, force: true });
  }
}

function assertCleanedUp(t: ExecutionContext, stderr: string): void {
  const names = runNames(stderr);
  t.is(names.length, 1, `one run name announced on stderr:\n${stderr}`);
  for (const name of names) t.deepEqual(leftovers(name), [], `run ${name} left these behind`);
}

function tempDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-bench-test-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const isNumber = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

/** The parts of results.json a reader relies on, with their types. */
function checkSchema(t: ExecutionContext, r: Record<string, any>, rounds: number): void {
  t.is(r.schemaVersion, 1);
  t.is(typeof r.sockaccelVersion, 'string');
  t.is(r.profile, 'quick');
  t.false(Number.isNaN(Date.parse(r.startedAt)));
  t.true(isNumber(r.elapsedSec));
  t.is(r.environment.kernel, os.release());
  t.is(typeof r.environment.cpuModel, 'string');
  t.true(isNumber(r.environment.onlineCpus));
  t.is(typeof r.environment.cpuSets.sameCpu, 'string');
  for (const key of ['loadGenerator', 'order', 'integrity', 'cpuAccounting', 'acceleratedSide']) t.is(typeof r.method[key], 'string', `method.${key}`);
  t.is(r.method.rounds, rounds);
  for (const kind of ['rr', 'stream', 'connrate']) t.true(isNumber(r.method.durationMs[kind]));
  t.deepEqual(r.paths.map((p: { name: string }) => p.name), ['loopback', 'dual-stack', 'pod-to-pod', 'sidecar-chain']);
  t.is(r.integrityGate.length, r.paths.length);
  for (const gate of r.integrityGate) t.true(gate.checks.length >= 3 && gate.checks.every((c: unknown) => typeof c === 'string'));

  const headline: Record<string, string> = { rr: 'p50Us', stream: 'gbps', connrate: 'connPerSec' };
  t.deepEqual([...new Set(r.cases.map((c: { kind: string }) => c.kind))].sort(), ['connrate', 'rr', 'stream']);
  for (const c of r.cases) {
    const metric = headline[c.kind]!;
    t.is(typeof c.id, 'string');
    t.true(c.size === null || isNumber(c.size), c.id);
    t.true(['same-cpu', 'cross-cpu'].includes(c.pinning), c.id);
    t.is(typeof c.cpus.server, 'string');
    t.is(typeof c.cpus.client, 'string');
    for (const side of ['plain', 'accelerated']) {
      const s = c.sides[side][metric];
      t.true(isNumber(s.median) && s.median > 0, `${c.id} ${side} median`);
      t.true(isNumber(s.spread.min) && isNumber(s.spread.max) && isNumber(s.spread.relative), `${c.id} ${side} spread`);
      t.is(s.rounds.length, rounds);
    }
    t.is(c.ratios.acceleratedVsPlain[metric].perRound.length, rounds, c.id);
    t.true(isNumber(c.ratios.acceleratedVsPlain[metric].median), c.id);
    if (c.kind !== 'connrate') t.true(isNumber(c.ratios.acceleratedVsUnix[metric].median), `${c.id} has a Unix socket comparison`);
    if (c.kind !== 'connrate' && c.path === 'loopback') t.true(isNumber(c.sides.unix[metric].median), `${c.id} unix`);
  }
  t.true(r.goals.length >= 5);
  for (const g of r.goals) {
    t.is(typeof g.description, 'string');
    t.true(g.measured === null || isNumber(g.measured));
    t.true(g.met === null || typeof g.met === 'boolean');
  }
  for (const side of ['plain', 'accelerated', 'unix']) t.true(isNumber(r.observations.spuriousEagain[side]));
}

/** A minimal XML check: one <svg> root in the SVG namespace, every tag closed in order, bars and labels present. */
function checkSvg(t: ExecutionContext, svg: string): void {
  t.true(svg.startsWith('<?xml'), 'XML declaration');
  const body = svg.replace(/^<\?xml[^>]*\?>\s*/, '');
  t.regex(body, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="\d+" height="\d+"/);
  const stack: string[] = [];
  let elements = 0;
  for (const m of body.matchAll(/<(\/?)([a-zA-Z]+)([^>]*?)(\/?)>/g)) {
    const [, closing, name, , selfClosing] = m;
    elements++;
    if (closing) t.is(stack.pop(), name, `closing </${name}>`);
    else if (!selfClosing) stack.push(name!);
  }
  t.deepEqual(stack, [], 'every element closed');
  t.true(elements > 20);
  t.true((body.match(/<rect /g) ?? []).length > 8, 'bars');
  t.regex(body, /Round trip p50/);
  t.regex(body, /Throughput by write size/);
  t.notRegex(body, /NaN|undefined/);
}

privileged('bench --quick end to end: JSON on stdout and in results.json, a valid chart, sockperf beside loadgen, the sidecar chain, nothing left behind', async (t) => {
  const dir = tempDir(t);
  const out = path.join(dir, 'copy.json');
  const { code, stdout, stderr } = await serially(() => startBench(t, [...SMALL, ...ONE_SHORT_ROUND, '--sockperf', '--json', '--out-dir', dir, '--out', out]).done);
  t.is(code, 0, stderr);
  const results = JSON.parse(stdout);
  checkSchema(t, results, 1);
  t.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'results.json'), 'utf8')), results);
  t.deepEqual(JSON.parse(fs.readFileSync(out, 'utf8')), results);
  // The chain's gate counted every hop: app -> sidecar -> sidecar -> app is three connections.
  const chain = results.integrityGate.find((g: { path: string }) => g.path === 'sidecar-chain');
  t.regex(chain.checks.join('\n'), /6 sockets paired; \d+ bytes redirected across 3 connections, 0 over plain TCP/);
  t.true(results.cases.some((c: { id: string }) => c.id === 'rr/sidecar-chain/64/same-cpu'), 'the chain measured');
  t.is(results.sockperf.length, 2);
  for (const s of results.sockperf) t.true(isNumber(s.sockperf.p50Us) && isNumber(s.loadgen.p50Us) && isNumber(s.p50Ratio));
  checkSvg(t, fs.readFileSync(path.join(dir, 'chart.svg'), 'utf8'));
  t.regex(stderr, /bench: \[\d+\/\d+\] round 1\/1/, 'plain progress lines when stderr is not a terminal');
  assertCleanedUp(t, stderr);
});

privileged('the table is the default output', async (t) => {
  const dir = tempDir(t);
  const small = [...SMALL, ...ONE_SHORT_ROUND, '--paths', 'loopback', '--kinds', 'rr'];
  const { code, stdout, stderr } = await serially(() => startBench(t, [...small, '--out-dir', dir]).done);
  t.is(code, 0, stderr);
  t.regex(stdout, /Request\/response round trip/);
  t.regex(stdout, /loopback\s+64 B\s+same-cpu/);
  t.regex(stdout, new RegExp(`kernel ${os.release().replace(/\./g, '\\.')}`));
  t.true(fs.existsSync(path.join(dir, 'chart.svg')));
  assertCleanedUp(t, stderr);
});

privileged('integrity gate: an accelerated side that is not accelerated fails loudly, with no numbers', async (t) => {
  const dir = tempDir(t);
  // The daemon's own port filter leaves every bench connection plain TCP.
  const args = [...SMALL, ...ONE_SHORT_ROUND, '--paths', 'loopback', '--kinds', 'rr', '--include-ports=1', '--out-dir', dir];
  const { code, stdout, stderr } = await serially(() => startBench(t, args).done);
  t.is(code, 1, stderr);
  t.regex(stderr, /INTEGRITY FAILURE: rr loopback 64 B same-cpu accelerated: the accelerated run fell back to plain TCP: the connection was never paired/);
  // The counters name the cause: the client's handshake was skipped for its port.
  t.regex(stderr, /skipped_port \+1/);
  t.is(stdout, '');
  t.false(fs.existsSync(path.join(dir, 'results.json')));
  assertCleanedUp(t, stderr);
});

privileged('SIGINT mid-run: exit 130 and the cgroup, namespaces, pins and processes are gone', async (t) => {
  const dir = tempDir(t);
  const result = await serially(async () => {
    const { child, done } = startBench(t, [...SMALL, '--rounds', '3', '--duration-ms', '300', '--out-dir', dir]);
    let seen = '';
    child.stderr!.on('data', (d: string) => (seen += d));
    const measuring = () => {
      if (/round 1\/3: rr/.test(seen)) return true;
      throw new Error(`stderr so far:\n${seen}`);
    };
    await waitFor('a measurement to start', measuring, {
      timeoutMs: 60_000,
      failIf: () => child.exitCode !== null && `the bench exited (${child.exitCode}):\n${seen}`,
    });
    child.kill('SIGINT');
    return done;
  });
  t.is(result.code, 130, result.stderr);
  t.regex(result.stderr, /interrupted/);
  t.false(fs.existsSync(path.join(dir, 'results.json')));
  assertCleanedUp(t, result.stderr);
});
