/**
 * One connection that keeps streaming until told to stop (a held peer.js
 * client with --until-signal) against an echo server: for tests that
 * restart, kill, upgrade or stop the daemon under a live connection and then
 * check every byte in both directions.
 */
import type { ClientReport, ServerConnReport } from './peer-protocol';
import type { Placement } from './process';
import { startServer, withHeldClient, type HeldClient, type ServerHandle } from './traffic';

export interface LongStreamOptions extends Placement {
  host: string;
  /** Bytes per write (default 4096). */
  chunk?: number;
  /** Sleep between writes (default 5 ms): a steady trickle of sendmsg calls. */
  pauseMs?: number;
  seed?: string;
  /** The client reads nothing until its own FIN: echoed bytes queue up unread meanwhile. */
  halfClose?: boolean;
  /** With halfClose: the client reads nothing, even after its FIN, until finish(). */
  holdReads?: boolean;
}

export interface LongStreamResult {
  client: ClientReport;
  server: ServerConnReport[];
}

export interface LongStream {
  readonly server: ServerHandle;
  readonly client: HeldClient;
  /** Tells the client to stop writing and FIN; finish() does it too. */
  stopWriting(): void;
  /** Tells the client to stop writing (and, with holdReads, to start reading); returns both sides' reports. */
  finish(timeoutMs?: number): Promise<LongStreamResult>;
}

/** Runs `fn` with a long stream to a new echo server; stops both ends afterwards, whatever happened. */
export async function withLongStream<T>(opts: LongStreamOptions, fn: (stream: LongStream) => Promise<T>): Promise<T> {
  const placement: Placement = { cgroup: opts.cgroup, netns: opts.netns };
  const server = await startServer({ ...placement, host: opts.host, mode: 'echo' });
  try {
    return await withStreamTo(server, opts, fn);
  } finally {
    await server.stop();
  }
}

/**
 * Runs `fn` with a long stream from `opts`' placement to an echo server the
 * caller started (and stops): e.g. a server in another pod, or one that
 * predates the daemon. Kills the client afterwards, whatever happened.
 */
export function withStreamTo<T>(server: ServerHandle, opts: LongStreamOptions, fn: (stream: LongStream) => Promise<T>): Promise<T> {
  const clientOpts = {
    cgroup: opts.cgroup, netns: opts.netns, uid: opts.uid, host: opts.host, port: server.port, stream: true,
    chunk: opts.chunk ?? 4096, pauseMs: opts.pauseMs ?? 5, seed: opts.seed ?? 'long-stream', halfClose: opts.halfClose, holdReads: opts.holdReads,
  };
  return withHeldClient(clientOpts, (client) =>
    fn({
      server,
      client,
      stopWriting: client.stopWriting,
      async finish(timeoutMs = 30_000) {
        const report = await client.release(timeoutMs);
        return { client: report, server: await server.results(1) };
      },
    }),
  );
}
