/**
 * The record of a bench run in progress, /run/sockaccel/bench/<run id>.json:
 * who owns the run (pid and start time) and the processes it started. The
 * run's other scratch resources carry the run id in their names (cgroup, pin
 * root, namespaces `<run id>-*`), so the record need not list them. Whatever
 * ends the run (SIGKILL included), the next bench, doctor or purge can tell a
 * dead run's leftovers from a live run's resources: other benches and tests
 * run on the same machine at the same time, and theirs must never be touched.
 *
 * A process is named by pid and start time (/proc/<pid>/stat field 22, clock
 * ticks since boot): a pid alone may have been reused by the time anyone looks.
 */
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { LOCK_DIR } from '../daemon/instance-lock';

/**
 * Where run records live. SOCKACCEL_BENCH_RECORD_DIR moves them: a bench,
 * doctor or purge then sees only the runs recorded there (the cleanup tests
 * use it, so that a purge in another test file cannot sweep the dead run a
 * test is still looking at).
 */
export const RECORD_DIR = process.env.SOCKACCEL_BENCH_RECORD_DIR || path.join(LOCK_DIR, 'bench');

/** Everything a run names on the machine (cgroup, pin root, namespaces, scratch directory) starts with its run id. */
export const RUN_ID_PATTERN = /^sockaccel-bench-[0-9a-f]{6}$/;

export interface ProcessIdentity {
  readonly pid: number;
  /** Clock ticks after boot at which the process started. */
  readonly startTime: number;
}

export interface ChildRecord extends ProcessIdentity {
  readonly description: string;
}

export interface RunRecord {
  readonly runId: string;
  /** The bench process: the run is live exactly as long as it is. */
  readonly owner: ProcessIdentity;
  readonly startedAt: string;
  /** The run's directory for Unix sockets (its name starts with the run id; it lives under the owner's TMPDIR). */
  readonly scratchDir?: string;
  /** The owner's children when last looked at. */
  readonly children: readonly ChildRecord[];
}

/**
 * The process `pid` now, or undefined when there is none or only its zombie
 * (it has exited; the pid is not free yet, but nothing runs under it).
 */
export function processIdentity(pid: number): ProcessIdentity | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return parseStat(pid, stat);
}

/** /proc/<pid>/stat: undefined for a zombie (or a process being released). */
export function parseStat(pid: number, stat: string): ProcessIdentity | undefined {
  // The command name (field 2) may hold spaces and parentheses: count fields after its last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const startTime = Number(fields[19]);
  if (state === 'Z' || state === 'X' || !Number.isSafeInteger(startTime)) return undefined;
  return { pid, startTime };
}

/** True while the very process `id` names still runs (a reused pid does not count). */
export function isRunning(id: ProcessIdentity): boolean {
  return processIdentity(id.pid)?.startTime === id.startTime;
}

/**
 * This process's children, each described by its command line: everything
 * the run started, whoever in the process started it (the scratch daemon's
 * own `ip monitor` included).
 */
export function ownChildren(): ChildRecord[] {
  const childrenOfTask = (tid: string) => {
    try {
      return fs.readFileSync(`/proc/self/task/${tid}/children`, 'utf8').split(' ');
    } catch {
      return []; // a thread that ended just now
    }
  };
  return fs
    .readdirSync('/proc/self/task')
    .flatMap(childrenOfTask)
    .filter(Boolean)
    .flatMap((text) => {
      const pid = Number(text);
      const id = processIdentity(pid);
      if (id === undefined) return [];
      let command = '?';
      try {
        command = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean).join(' ').slice(0, 80);
      } catch {
        // exited just now; the start time above is still right
      }
      return [{ ...id, description: command }];
    });
}

export function recordPath(runId: string, dir = RECORD_DIR): string {
  return path.join(dir, `${runId}.json`);
}

/** Writes the whole record to a temporary name, then renames it: a reader never sees half of it. */
function writeRecord(record: RunRecord, dir: string): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  const file = recordPath(record.runId, dir);
  fs.writeFileSync(`${file}.tmp`, `${JSON.stringify(record, null, 2)}\n`, { mode: 0o644 });
  fs.renameSync(`${file}.tmp`, file);
}

/** The live run's side: created before the run makes anything, removed once everything it made is gone. */
export class RunRecorder {
  private record: RunRecord;
  private removed = false;

  constructor(
    runId: string,
    private readonly dir = RECORD_DIR,
  ) {
    const owner = processIdentity(process.pid);
    if (owner === undefined) throw new Error(`cannot read /proc/${process.pid}/stat`);
    this.record = { runId, owner, startedAt: new Date().toISOString(), children: [] };
    writeRecord(this.record, dir);
  }

  /** A no-op once removed: a child reaped after the run must not bring the record back. */
  update(change: Partial<Pick<RunRecord, 'scratchDir' | 'children'>>): void {
    if (this.removed) return;
    this.record = { ...this.record, ...change };
    writeRecord(this.record, this.dir);
  }

  remove(): void {
    this.removed = true;
    fs.rmSync(recordPath(this.record.runId, this.dir), { force: true });
  }
}

/** `sockaccel-bench-<random>`, unused by any recorded run. */
export function newRunId(dir = RECORD_DIR): string {
  for (;;) {
    const runId = `sockaccel-bench-${randomBytes(3).toString('hex')}`;
    if (!fs.existsSync(recordPath(runId, dir))) return runId;
  }
}

function isRecord(value: unknown, runId: string): value is RunRecord {
  const r = value as Partial<RunRecord> | null;
  const isIdentity = (id: unknown) => Number.isSafeInteger((id as ProcessIdentity)?.pid) && Number.isSafeInteger((id as ProcessIdentity)?.startTime);
  return (
    typeof r === 'object' && r !== null && r.runId === runId && isIdentity(r.owner) &&
    Array.isArray(r.children) && r.children.every(isIdentity) && (r.scratchDir === undefined || typeof r.scratchDir === 'string')
  );
}

/**
 * The record of `runId`, or undefined when there is none (any more); throws
 * on one that cannot be read, or that neither root (who runs every bench) nor
 * this user wrote: a sweeper kills what a record names.
 */
export function readRunRecord(runId: string, dir = RECORD_DIR): RunRecord | undefined {
  const file = recordPath(runId, dir);
  let text: string;
  try {
    const { uid } = fs.statSync(file);
    if (uid !== 0 && uid !== process.getuid?.()) throw new Error(`${file} belongs to uid ${uid}, not root: refusing to act on it; remove it`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!isRecord(parsed, runId)) {
    throw new Error(`${file} is not a bench run record: its owner is unknown, so nothing of run ${runId} is touched; remove the file once you know no bench of that run id runs`);
  }
  return parsed;
}

/** Run ids of every record present. */
export function recordedRunIds(dir = RECORD_DIR): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
  return names.filter((n) => n.endsWith('.json')).map((n) => n.slice(0, -'.json'.length)).filter((id) => RUN_ID_PATTERN.test(id));
}
