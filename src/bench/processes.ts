/**
 * The bench's child processes: placed in a cgroup, a network namespace and
 * on CPUs before their first instruction, speaking one JSON object per line
 * on stdout. Every child is tracked, so that cleanup (and SIGINT) can end
 * exactly the processes the bench started, by pid, and nothing else.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface Placement {
  /** cgroup v2 directory to run in; the bench process's own cgroup when absent. */
  readonly cgroup?: string;
  /** Named network namespace (`ip netns`); the bench's own when absent. */
  readonly netns?: string;
  /** taskset CPU list, e.g. "1" or "0,1". */
  readonly cpus?: string;
}

/**
 * The argv that runs `argv` at `placement` from its first instruction: the
 * shell joins the cgroup, then execs `ip netns exec` (which execs taskset,
 * which execs the program), so the spawned pid is the program's pid and
 * every socket it opens is born in the cgroup, where sock_ops sees it.
 * The cgroup is joined before `ip netns exec`, which remounts /sys and would
 * hide the cgroup2 mount.
 */
export function placedArgv(argv: readonly string[], placement: Placement): string[] {
  let command = [...argv];
  if (placement.cpus !== undefined) command = ['taskset', '-c', placement.cpus, ...command];
  if (placement.netns !== undefined) command = ['ip', 'netns', 'exec', placement.netns, ...command];
  if (placement.cgroup !== undefined) {
    command = ['sh', '-c', 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', 'sh', placement.cgroup, ...command];
  }
  return command;
}

/**
 * `argv` behind a gate: the child waits for one line on stdin before it runs
 * the program. The bench releases it once its run record names the child;
 * if the bench dies first (SIGKILL), stdin ends instead and the child exits
 * without running it, so no process of the run escapes the record.
 */
export function gatedArgv(argv: readonly string[]): string[] {
  return ['sh', '-c', 'read -r go && exec "$@"', 'sh', ...argv];
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export type JsonLine = Record<string, unknown> & { event?: string };

const STDERR_TAIL = 4096;

/**
 * A child process and its stdout: every line as text, and (for programs that
 * speak JSON lines) parsed, with an unparsable line turned into an error.
 */
export class JsonProcess {
  readonly pid: number;
  readonly lines: JsonLine[] = [];
  readonly text: string[] = [];
  readonly exited: Promise<ExitStatus>;
  private status: ExitStatus | undefined;
  private stderrTail = '';
  private readonly waiters = new Set<() => void>();
  private readonly child: ChildProcess;

  constructor(
    readonly description: string,
    argv: readonly string[],
    private readonly onExit: (p: JsonProcess) => void,
    json = true,
  ) {
    const [command, ...args] = argv;
    this.child = spawn(command!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    this.child.on('error', (err) => {
      this.stderrTail += `\n[spawn error] ${err.message}`;
    });
    if (this.child.pid === undefined) throw new Error(`${description}: could not start ${command}`);
    this.pid = this.child.pid;
    // Gone before it was released (see gatedArgv): nothing to tell it.
    this.child.stdin!.on('error', () => {});
    createInterface({ input: this.child.stdout! }).on('line', (line) => {
      this.text.push(line);
      if (json) {
        try {
          this.lines.push(JSON.parse(line) as JsonLine);
        } catch {
          this.lines.push({ event: 'error', message: `unparsable output: ${line.slice(0, 200)}` });
        }
      }
      this.notify();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (text: string) => {
      this.stderrTail = (this.stderrTail + text).slice(-STDERR_TAIL);
    });
    this.exited = new Promise((resolve) => {
      // 'close', not 'exit': stdout has been read to the end by then.
      this.child.on('close', (code, signal) => {
        this.status = { code, signal };
        this.onExit(this);
        this.notify();
        resolve(this.status);
      });
    });
  }

  /** Lets a gated child (gatedArgv) run its program. */
  release(): void {
    this.child.stdin!.end('\n');
  }

  get running(): boolean {
    return this.status === undefined;
  }

  /** Resolves with the first line `match` accepts; rejects if the process exits or time runs out first. */
  waitFor(match: (line: JsonLine) => boolean, timeoutMs: number, what: string): Promise<JsonLine> {
    return new Promise((resolve, reject) => {
      const done = (settle: () => void) => {
        clearTimeout(timer);
        this.waiters.delete(check);
        settle();
      };
      const check = () => {
        const error = this.lines.find((l) => l.event === 'error');
        const found = this.lines.find(match);
        if (found) done(() => resolve(found));
        else if (error) done(() => reject(new Error(this.explain(`reported: ${String(error.message)}`))));
        else if (this.status) done(() => reject(new Error(this.explain(`exited while waiting for ${what}`))));
      };
      const timer = setTimeout(() => done(() => reject(new Error(this.explain(`timed out after ${timeoutMs} ms waiting for ${what}`)))), timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  signal(signal: NodeJS.Signals): void {
    // A no-op once reaped: the pid may belong to someone else by then.
    if (this.running) this.child.kill(signal);
  }

  async kill(): Promise<void> {
    this.signal('SIGKILL');
    await this.exited;
  }

  /** What went wrong, with the exit status and the tail of stderr. */
  explain(problem: string): string {
    const status = this.status ? `exit code ${this.status.code}, signal ${this.status.signal}` : 'still running';
    const stderr = this.stderrTail.trim();
    return `${this.description} (pid ${this.pid}) ${problem}; ${status}${stderr ? `\nstderr: ${stderr}` : ''}`;
  }

  private notify(): void {
    for (const waiter of [...this.waiters]) waiter();
  }
}

/** Every child the bench started that has not exited yet. */
export class ProcessGroup {
  private readonly live = new Set<JsonProcess>();
  private watcher: (() => void) | undefined;

  /** Starts `argv` at `placement`; it runs its program once every watcher knows it. */
  spawn(description: string, argv: readonly string[], placement: Placement, json = true): JsonProcess {
    const proc = new JsonProcess(
      description,
      gatedArgv(placedArgv(argv, placement)),
      (p) => {
        this.live.delete(p);
        this.watcher?.();
      },
      json,
    );
    this.live.add(proc);
    this.watcher?.();
    proc.release();
    return proc;
  }

  /** Children still running. */
  get running(): readonly JsonProcess[] {
    return [...this.live];
  }

  /** Calls `watcher` whenever a child starts (before it runs its program) or exits. */
  watch(watcher: () => void): void {
    this.watcher = watcher;
  }

  /** SIGKILLs (by pid) and reaps every child still running. */
  async killAll(): Promise<void> {
    await Promise.all([...this.live].map((p) => p.kill()));
  }
}
