/*
 * Telling a dead bench run from a live one: the owner by pid and start time
 * (a reused pid is not the owner), the same for recorded children, and the
 * stat parser that reads the start time. No privilege needed: nothing is
 * removed here (test/integration/bench-cleanup.test.ts removes real leftovers).
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import test, { type ExecutionContext } from 'ava';
import { describeDeadRun, findDeadRuns } from '../../src/bench/leftovers';
import { isRunning, newRunId, parseStat, processIdentity, readRunRecord, RunRecorder, type RunRecord } from '../../src/bench/run-record';

function recordDir(t: ExecutionContext): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockaccel-run-records-'));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeRecord(dir: string, record: RunRecord): void {
  fs.writeFileSync(path.join(dir, `${record.runId}.json`), JSON.stringify(record));
}

const self = () => processIdentity(process.pid)!;

test('parseStat: the start time after a command name with spaces and parentheses; a zombie is no process', (t) => {
  const tail = (state: string) => `${state} 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 424242 20 21`;
  t.deepEqual(parseStat(7, `7 (a) (b c) ${tail('S')}`), { pid: 7, startTime: 424242 });
  t.is(parseStat(7, `7 (sidecar) ${tail('Z')}`), undefined);
  t.is(parseStat(7, `7 (sidecar) ${tail('X')}`), undefined);
});

test('isRunning: this process is, under its own start time only', (t) => {
  const me = self();
  t.true(isRunning(me));
  t.false(isRunning({ pid: me.pid, startTime: me.startTime + 1 }), 'a reused pid is someone else');
});

test('a run whose owner runs is not a leftover; one whose pid now belongs to another process is', (t) => {
  const dir = recordDir(t);
  const me = self();
  const live: RunRecord = { runId: newRunId(dir), owner: me, startedAt: '', children: [] };
  writeRecord(dir, live);
  t.deepEqual(findDeadRuns(dir), []);

  // The owner's pid reused by this process: the owner is gone. Of its two
  // recorded children, the one whose start time matches still runs; the
  // other pid is someone else's now and must not be killed.
  const child = { ...me, description: 'loadgen server' };
  const reused = { pid: me.pid, startTime: me.startTime - 1, description: 'sidecar' };
  const dead: RunRecord = { runId: newRunId(dir), owner: { pid: me.pid, startTime: me.startTime + 1 }, startedAt: '', children: [child, reused] };
  writeRecord(dir, dead);
  const found = findDeadRuns(dir);
  t.is(found.length, 1);
  t.is(found[0]!.runId, dead.runId);
  t.deepEqual(found[0]!.processes, [child]);
  t.is(found[0]!.record, path.join(dir, `${dead.runId}.json`));
  t.regex(describeDeadRun(found[0]!), new RegExp(`bench run ${dead.runId} \\(owner pid ${me.pid} is gone\\): 1 processes \\(pid ${me.pid} loadgen server\\)$`));
});

test('files that are not run records are ignored; a damaged record is an error, not a guess', (t) => {
  const dir = recordDir(t);
  fs.writeFileSync(path.join(dir, 'notes.json'), '{}');
  fs.writeFileSync(path.join(dir, 'sockaccel-bench-abcdef.json.tmp'), '{');
  t.deepEqual(findDeadRuns(dir), []);
  fs.writeFileSync(path.join(dir, 'sockaccel-bench-abcdef.json'), '{"runId":"sockaccel-bench-abcdef"}');
  t.throws(() => findDeadRuns(dir), { message: /sockaccel-bench-abcdef\.json is not a bench run record/ });
  fs.writeFileSync(path.join(dir, 'sockaccel-bench-abcdef.json'), '{"runId":');
  t.throws(() => findDeadRuns(dir), { message: /sockaccel-bench-abcdef\.json is not a bench run record/ });
});

test('RunRecorder: written at once, updated whole, gone after remove, and not brought back by a late update', (t) => {
  const dir = recordDir(t);
  const runId = newRunId(dir);
  const recorder = new RunRecorder(runId, dir);
  t.deepEqual(readRunRecord(runId, dir)?.owner, self());
  recorder.update({ children: [{ ...self(), description: 'x' }] });
  t.is(readRunRecord(runId, dir)?.children.length, 1);
  recorder.remove();
  recorder.update({ children: [] });
  t.is(readRunRecord(runId, dir), undefined);
  t.deepEqual(fs.readdirSync(dir), []);
});
