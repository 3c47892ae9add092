import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import { createInterface } from 'node:readline';
import type { PeerEvent } from './peer-protocol';
import { scaled } from './wait-for';

/** Where a process runs: a cgroup v2 directory, a named network namespace, and as whom. */
export interface Placement {
  cgroup?: string;
  netns?: string;
  /** Run as this uid, e.g. a mesh proxy's 1337; root otherwise. */
  uid?: number;
  /** With `uid`: the gid to run as (default: the uid's number). */
  gid?: number;
}

export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

const STDERR_TAIL_BYTES = 8192;

/**
 * The argv that runs `argv` at `placement` from its first instruction, so every
 * socket it opens belongs to the cgroup (sock_ops sees it) and the namespace.
 *
 * The shell joins the cgroup *before* `ip netns exec`: that one unshares the
 * mount namespace and remounts /sys for the new netns, which hides the cgroup2
 * mount under /sys/fs/cgroup. Both `sh` and `ip netns exec` exec in place, so
 * the spawned pid is the final program's pid.
 */
export function placedArgv(argv: string[], placement: Placement): string[] {
  let command = argv;
  // setpriv last: `ip netns exec` needs root, the program itself may not.
  if (placement.uid !== undefined) {
    command = ['setpriv', `--reuid=${placement.uid}`, `--regid=${placement.gid ?? placement.uid}`, '--clear-groups', ...command];
  }
  if (placement.netns) command = ['ip', 'netns', 'exec', placement.netns, ...command];
  if (placement.cgroup) {
    command = ['sh', '-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', placement.cgroup, ...command];
  }
  return command;
}

/** Every child we spawned that has not exited yet: the only processes we may kill. */
const liveChildren = new Set<JsonLineProcess>();

// Last resort if a test body escapes its cleanup (e.g. AVA times out): a worker
// thread or process exiting must not leave our children running.
process.on('exit', () => {
  for (const child of liveChildren) child.signal('SIGKILL');
});

/**
 * A child process that prints one JSON object per line on stdout. Keeps every
 * event, the tail of stderr, and lets callers wait for conditions on the events.
 */
export class JsonLineProcess {
  readonly pid: number;
  readonly events: PeerEvent[] = [];
  readonly exited: Promise<ExitStatus>;
  private exitStatus: ExitStatus | undefined;
  private stderrTail = '';
  private readonly listeners = new Set<() => void>();
  private readonly child: ChildProcess;

  constructor(readonly description: string, argv: string[], readonly placement: Placement) {
    const [command, ...args] = placedArgv(argv, placement);
    this.child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // Without a listener a spawn failure (e.g. ENOENT) would be an uncaught exception.
    this.child.on('error', (err) => {
      this.stderrTail += `\n[spawn error] ${err.message}`;
    });
    if (this.child.pid === undefined) throw new Error(`${description}: could not spawn ${command}`);
    this.pid = this.child.pid;
    liveChildren.add(this);

    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.events.push(parseEventLine(line));
      this.notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL_BYTES);
    });
    this.exited = new Promise((resolve) => {
      // 'close' (not 'exit') so that stdout has been fully read into `events`.
      this.child.on('close', (code, signal) => {
        liveChildren.delete(this);
        this.exitStatus = { code, signal };
        this.notify();
        resolve(this.exitStatus);
      });
    });
  }

  /**
   * Resolves with `check(events)` as soon as it returns something other than
   * undefined; rejects with the process's output if it exits or time runs out first.
   */
  waitUntil<T>(check: (events: PeerEvent[]) => T | undefined, timeoutMs: number, what: string): Promise<T> {
    return new Promise((resolve, reject) => {
      const finish = (settle: () => void) => {
        clearTimeout(timer);
        this.listeners.delete(onChange);
        settle();
      };
      const onChange = () => {
        let result: T | undefined;
        try {
          result = check(this.events);
        } catch (err) {
          finish(() => reject(err));
          return;
        }
        if (result !== undefined) finish(() => resolve(result));
        else if (this.exitStatus) finish(() => reject(new Error(this.failureReport(`exited while waiting for ${what}`))));
      };
      const timer = setTimeout(
        () => finish(() => reject(new Error(this.failureReport(`timed out after ${scaled(timeoutMs)} ms waiting for ${what}`)))),
        scaled(timeoutMs),
      );
      this.listeners.add(onChange);
      onChange();
    });
  }

  /** For waitFor's failIf: the failure report once the process has exited, else undefined. */
  readonly exitedReport = (): string | undefined => (this.exitStatus ? this.failureReport('exited') : undefined);

  /** Waits for exit; kills the process and rejects if it takes longer than `timeoutMs`. */
  async exitWithin(timeoutMs: number): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(this.failureReport(`did not exit within ${scaled(timeoutMs)} ms`))), scaled(timeoutMs));
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } catch (err) {
      await this.kill();
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /** SIGKILL and wait until it is reaped. Idempotent; never signals a reaped (reusable) pid. */
  async kill(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }

  signal(signal: NodeJS.Signals): void {
    // ChildProcess.kill targets this child's pid and is a no-op once it was reaped.
    if (!this.exitStatus) this.child.kill(signal);
  }

  /** A multi-line explanation: what went wrong, exit status, events so far, stderr tail. */
  failureReport(problem: string): string {
    const status = this.exitStatus
      ? `exit code ${this.exitStatus.code}, signal ${this.exitStatus.signal}`
      : 'still running';
    const lastEvents = this.events.slice(-5).map((e) => JSON.stringify(e).slice(0, 400));
    return [
      `${this.description} (pid ${this.pid}) ${problem}; ${status}`,
      `placement: ${JSON.stringify(this.placement)}`,
      `last events:\n  ${lastEvents.join('\n  ') || '(none)'}`,
      `stderr:\n${this.stderrTail.trim() || '(empty)'}`,
    ].join('\n');
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

function parseEventLine(line: string): PeerEvent {
  try {
    return JSON.parse(line) as PeerEvent;
  } catch {
    return { event: 'error', message: `unparsable output line: ${line}` };
  }
}

/** Kills (and reaps) those of our live children that `select` picks. */
export async function killChildren(select: (child: JsonLineProcess) => boolean): Promise<void> {
  await Promise.all([...liveChildren].filter(select).map((child) => child.kill()));
}

/** Runs a short command to completion; the error carries its stderr. */
export function runCommand(command: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(command, args, { timeout: scaled(30_000) }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${command} ${args.join(' ')} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

/** The pids whose parent is `pid` right now (from /proc/<pid>/stat: a process gone meanwhile is skipped). */
export function childPids(pid: number): number[] {
  return fs.readdirSync('/proc').filter((name) => /^\d+$/.test(name)).flatMap((name) => {
    try {
      // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ')'.
      const stat = fs.readFileSync(`/proc/${name}/stat`, 'utf8');
      return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) === pid ? [Number(name)] : [];
    } catch {
      return [];
    }
  });
}
