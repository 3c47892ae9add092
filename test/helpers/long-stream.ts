/**
 * One connection that keeps streaming until told to stop (peer.js client
 * --until-signal) against an echo server: for tests that restart, kill,
 * upgrade or stop the daemon under a live connection and then check every
 * byte in both directions.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { ClientReport, ServerConnReport } from './peer-protocol';
import { JsonLineProcess, type Placement } from './process';
import { startServer, type ServerHandle } from './traffic';

const PEER_SCRIPT = ((): string => {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, 'test', 'fixtures', 'peer.js');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`test/fixtures/peer.js not found above ${__dirname}`);
})();

export interface LongStreamOptions extends Placement {
  host: string;
  /** Bytes per write (default 4096). */
  chunk?: number;
  /** Sleep between writes (default 5 ms): a steady trickle of sendmsg calls. */
  pauseMs?: number;
  seed?: string;
  /** The client reads nothing until its own FIN: echoed bytes queue up unread meanwhile. */
  halfClose?: boolean;
}

export interface LongStreamResult {
  client: ClientReport;
  server: ServerConnReport[];
}

export interface LongStream {
  readonly server: ServerHandle;
  readonly client: JsonLineProcess;
  /** Tells the client to stop writing (SIGUSR2) and returns both sides' reports. */
  finish(timeoutMs?: number): Promise<LongStreamResult>;
}

async function startLongStream(opts: LongStreamOptions): Promise<LongStream> {
  const placement: Placement = { cgroup: opts.cgroup, netns: opts.netns };
  const server = await startServer({ ...placement, host: opts.host, mode: 'echo' });
  return streamTo(server, opts);
}

/**
 * A long stream from `opts`' placement to an echo server the caller started
 * (and stops): e.g. a server in another pod, or one that predates the daemon.
 */
export function streamTo(server: ServerHandle, opts: LongStreamOptions): LongStream {
  const placement: Placement = { cgroup: opts.cgroup, netns: opts.netns, uid: opts.uid };
  const args = [
    'client', '--host', opts.host, '--port', String(server.port), '--bytes', '0', '--until-signal',
    '--chunk', String(opts.chunk ?? 4096), '--pause-ms', String(opts.pauseMs ?? 5), '--seed', opts.seed ?? 'long-stream',
    ...(opts.halfClose ? ['--half-close'] : []),
  ];
  const client = new JsonLineProcess('long-stream client', [process.execPath, PEER_SCRIPT, ...args], placement);
  return {
    server,
    client,
    async finish(timeoutMs = 30_000) {
      client.signal('SIGUSR2');
      const status = await client.exitWithin(timeoutMs);
      const done = client.events.find((e) => e.event === 'done');
      if (status.code !== 0 || done?.event !== 'done') throw new Error(client.failureReport('did not finish cleanly'));
      return { client: { conns: done.conns, fionread: [] }, server: await server.results(1) };
    },
  };
}

/** Runs `fn` with a long stream; kills both ends afterwards, whatever happened. */
export async function withLongStream<T>(opts: LongStreamOptions, fn: (stream: LongStream) => Promise<T>): Promise<T> {
  const stream = await startLongStream(opts);
  try {
    return await fn(stream);
  } finally {
    await stream.client.kill();
    await stream.server.stop();
  }
}
