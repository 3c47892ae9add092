/**
 * The bench's load generator (build/native/loadgen) as a test traffic
 * source, for shapes peer.js cannot make exactly: request/response in lock
 * step (rr: one write, then wait for the answer) and streams of fixed-size
 * blocking writes (stream: one send() per --size bytes). loadgen checks
 * every byte itself (seeded patterns, `--verify full`); the bench's own
 * integrity rules judge its reports.
 */
import { integrityProblems, LOADGEN_BINARY, type LoadgenRun } from '../../src/bench/loadgen';
import { JsonLineProcess, type Placement } from './process';

export interface LoadgenExchange extends Placement {
  readonly mode: 'rr' | 'stream';
  readonly size: number;
  readonly host: string;
  /** A fixed port: every run to it is the same service. */
  readonly port: number;
  readonly durationMs: number;
  /** Go on past the duration until this many requests (rr) or writes (stream) were sent. */
  readonly minSends?: number;
  /** The server's own network namespace and bind address (default: the client's, and `host`). */
  readonly server?: { readonly netns: string; readonly listen: string };
}

type Line = Record<string, unknown> & { event?: string };

const START_MS = 10_000;
const REPORT_MS = 30_000;

function lineOf(p: JsonLineProcess, event: string, timeoutMs: number): Promise<Line> {
  return p.waitUntil((all) => (all as unknown as Line[]).find((l) => l.event === event), timeoutMs, `loadgen "${event}"`);
}

/**
 * One loadgen connection (rr or stream) from a client to a server, both at
 * `placement`; resolves with the run once both sides agree on every byte,
 * rejects with the problems otherwise.
 */
export async function loadgenExchange(opts: LoadgenExchange): Promise<LoadgenRun> {
  const { cgroup, netns } = opts;
  const placement: Placement = { ...(cgroup ? { cgroup } : {}), ...(netns ? { netns } : {}) };
  const common = ['--mode', opts.mode, '--size', String(opts.size), '--port', String(opts.port)];
  const serverPlacement: Placement = opts.server ? { ...placement, netns: opts.server.netns } : placement;
  const serverArgs = [...common, '--host', opts.server?.listen ?? opts.host, '--verify', 'full'];
  const server = new JsonLineProcess('loadgen server', [LOADGEN_BINARY, 'server', ...serverArgs], serverPlacement);
  try {
    await lineOf(server, 'listening', START_MS);
    const client = new JsonLineProcess(
      'loadgen client',
      [LOADGEN_BINARY, 'client', ...common, '--host', opts.host, '--duration-ms', String(opts.durationMs), '--warmup-ms', '0', ...(opts.minSends ? ['--min-sends', String(opts.minSends)] : [])],
      placement,
    );
    let result: Line;
    try {
      result = await lineOf(client, 'result', opts.durationMs + REPORT_MS);
    } finally {
      await client.kill();
    }
    const serverConn = await lineOf(server, 'conn', REPORT_MS);
    server.signal('SIGTERM');
    const summary = await lineOf(server, 'summary', REPORT_MS);
    const run = { client: result, serverConn, serverSummary: summary, spuriousEagain: 0 } as unknown as LoadgenRun;
    const problems = integrityProblems(run, 'full');
    if (problems.length > 0) throw new Error(`loadgen ${opts.mode} ${opts.size} B to ${opts.host}:${opts.port}: ${problems.join('; ')}`);
    return run;
  } finally {
    await server.kill();
  }
}
