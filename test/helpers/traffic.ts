import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runThenCleanUp } from './cleanup';
import type { ClientReport, FionreadReport, PeerEvent, ServerConnReport } from './peer-protocol';
import { JsonLineProcess, type Placement } from './process';
import { scaled } from './wait-for';

export { assertFionreadExact, assertIntegrity, fionreadProblems, integrityProblems } from './integrity';
export type { IntegrityExpectation } from './integrity';

/** test/fixtures/peer.js, found by walking up from this file (it is not copied into dist/). */
const PEER_SCRIPT = ((): string => {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    const candidate = join(dir, 'test', 'fixtures', 'peer.js');
    if (existsSync(candidate)) return candidate;
  }
  throw new Error(`test/fixtures/peer.js not found above ${__dirname}`);
})();

const DEFAULT_CLIENT_TIMEOUT_MS = 60_000;
const DEFAULT_RESULTS_TIMEOUT_MS = 15_000;

export type ServerMode = 'echo' | 'sink' | 'hashback' | 'fionread-check';

export interface ServerOptions extends Placement {
  /** Address to listen on; `::` also accepts IPv4 clients. */
  host: string;
  /** 0 (default) picks an ephemeral port. */
  port?: number;
  /**
   * echo: send back everything as it arrives; sink: discard; hashback: after the
   * client's FIN send the 32-byte SHA-256 of what arrived, then `replyBytes`;
   * fionread-check: see `fionreadCheck`. Default echo.
   */
  mode?: ServerMode;
  /** fionread-check: bytes every client sends before the server checks FIONREAD. */
  bytes?: number;
  /** hashback: pseudo-random bytes sent after the digest. */
  replyBytes?: number;
  seed?: string;
  fionreadTimeoutMs?: number;
  startTimeoutMs?: number;
}

export interface ServerHandle {
  pid: number;
  port: number;
  /**
   * Reports of finished connections, once at least `expectedConns` arrived.
   * Needed even after the client is done: the server reports only after its own
   * FIN is flushed, which the client may see first. Rejects on any connError.
   */
  results(expectedConns: number, timeoutMs?: number): Promise<ServerConnReport[]>;
  /** The server side's FIONREAD reports, once at least `expected` arrived. */
  fionread(expected: number, timeoutMs?: number): Promise<FionreadReport[]>;
  /** Kills the server (by its pid) and waits for it; idempotent. */
  stop(): Promise<void>;
}

export interface ClientOptions extends Placement {
  host: string;
  port: number;
  /** Bytes each connection sends. */
  bytes: number;
  /** Size of each write() (default 65536). */
  chunk?: number;
  /** Concurrent connections (default 1). */
  conns?: number;
  /** Seeds the per-connection payloads (default "1"). */
  seed?: string;
  /** stream (default): send, FIN, read until the server's FIN. fionread-check: see `fionreadCheck`. */
  mode?: 'stream' | 'fionread-check';
  /** Issue the first write in the same tick as connect(), before 'connect' fires. */
  firstWriteImmediate?: boolean;
  /** Read nothing until our own FIN is flushed: the whole response arrives on a half-closed socket. */
  halfClose?: boolean;
  /** Sleep between writes. */
  pauseMs?: number;
  fionreadTimeoutMs?: number;
  /** Kill the client and fail if it has not finished by then (default 60 s). */
  timeoutMs?: number;
}

function peerProcess(role: 'server' | 'client', args: (string | undefined)[], { cgroup, netns, uid, gid }: Placement): JsonLineProcess {
  const placement = { cgroup, netns, uid, gid };
  const definedArgs = args.filter((arg): arg is string => arg !== undefined);
  const where = [placement.netns && `netns ${placement.netns}`, placement.cgroup && `cgroup ${placement.cgroup}`]
    .filter(Boolean)
    .join(', ');
  return new JsonLineProcess(`peer ${role}${where ? ` in ${where}` : ''}`, [process.execPath, PEER_SCRIPT, role, ...definedArgs], placement);
}

/** `--name value` if the value is set. */
function option(name: string, value: string | number | undefined): (string | undefined)[] {
  return value === undefined ? [] : [`--${name}`, String(value)];
}

function flag(name: string, on: boolean | undefined): string[] {
  return on ? [`--${name}`] : [];
}

function events<K extends PeerEvent['event']>(all: PeerEvent[], kind: K): Extract<PeerEvent, { event: K }>[] {
  return all.filter((e): e is Extract<PeerEvent, { event: K }> => e.event === kind);
}

function withoutEventTag<T extends { event: string }>({ event: _event, ...rest }: T): Omit<T, 'event'> {
  return rest;
}

/** Runs `fn`, then stops the servers whatever happened. */
export async function stopping<T>(servers: readonly ServerHandle[], fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } finally {
    await Promise.all(servers.map((s) => s.stop()));
  }
}

/**
 * How long a fionread-check peer polls FIONREAD for the bytes it expects (its
 * client allows twice that for the echo): a deadline like any other, so it
 * scales with the machine. Where FIONREAD is blind to redirected bytes (6.1)
 * the poll runs to it; everywhere else it ends once the bytes are queued.
 */
const fionreadPollMs = (ms: number | undefined): number => ms ?? scaled(1500);

/** Starts a peer server and waits until it listens. */
export async function startServer(opts: ServerOptions): Promise<ServerHandle> {
  const server = peerProcess(
    'server',
    [
      ...option('host', opts.host),
      ...option('port', opts.port ?? 0),
      ...option('mode', opts.mode),
      ...option('bytes', opts.bytes),
      ...option('reply-bytes', opts.replyBytes),
      ...option('seed', opts.seed),
      ...option('fionread-timeout-ms', fionreadPollMs(opts.fionreadTimeoutMs)),
    ],
    opts,
  );
  let port: number;
  try {
    port = await server.waitUntil(
      (all) => {
        const failure = events(all, 'error')[0];
        if (failure) throw new Error(server.failureReport(`failed to start: ${failure.message}`));
        return events(all, 'listening')[0]?.port;
      },
      opts.startTimeoutMs ?? 15_000,
      'the listening event',
    );
  } catch (err) {
    await server.kill();
    throw err;
  }

  return {
    pid: server.pid,
    port,
    results: (expectedConns, timeoutMs = DEFAULT_RESULTS_TIMEOUT_MS) =>
      server.waitUntil(
        (all) => {
          const broken = events(all, 'connError');
          if (broken.length > 0) {
            throw new Error(server.failureReport(`reported broken connections:\n  ${broken.map((e) => JSON.stringify(e)).join('\n  ')}`));
          }
          const conns = events(all, 'conn');
          return conns.length >= expectedConns ? conns.map(withoutEventTag) : undefined;
        },
        timeoutMs,
        `${expectedConns} connection reports`,
      ),
    fionread: (expected, timeoutMs = DEFAULT_RESULTS_TIMEOUT_MS) =>
      server.waitUntil(
        (all) => {
          const reports = events(all, 'fionread');
          return reports.length >= expected ? reports.map(withoutEventTag) : undefined;
        },
        timeoutMs,
        `${expected} FIONREAD reports`,
      ),
    stop: () => server.kill(),
  };
}

function clientArgs(opts: Omit<ClientOptions, 'timeoutMs'>, extra: string[] = []): (string | undefined)[] {
  return [
    ...option('host', opts.host),
    ...option('port', opts.port),
    ...option('bytes', opts.bytes),
    ...option('chunk', opts.chunk),
    ...option('conns', opts.conns),
    ...option('seed', opts.seed),
    ...option('mode', opts.mode),
    ...option('pause-ms', opts.pauseMs),
    ...option('fionread-timeout-ms', fionreadPollMs(opts.fionreadTimeoutMs)),
    ...flag('first-write-immediate', opts.firstWriteImmediate),
    ...flag('half-close', opts.halfClose),
    ...extra,
  ];
}

/** Waits for a client's exit and returns its report; rejects with its output if it fails or times out. */
async function clientReport(client: JsonLineProcess, timeoutMs: number): Promise<ClientReport> {
  const status = await client.exitWithin(timeoutMs);
  const done = events(client.events, 'done')[0];
  if (status.code !== 0 || !done) {
    const failure = events(client.events, 'error')[0];
    throw new Error(client.failureReport(failure ? `failed: ${failure.message}` : 'exited without a done report'));
  }
  return { conns: done.conns, fionread: events(client.events, 'fionread').map(withoutEventTag) };
}

/**
 * Marks `promise` as handled and returns it unchanged: a client that fails
 * while its test awaits something else (or has already failed) rejects where
 * it is awaited, never as an unhandled rejection that ends the whole file.
 */
function awaitedLater<T>(promise: Promise<T>): Promise<T> {
  promise.catch(() => undefined);
  return promise;
}

/** Runs a peer client to completion; rejects with its output if it fails or times out. */
export function runClient(opts: ClientOptions): Promise<ClientReport> {
  const client = peerProcess('client', clientArgs(opts), opts);
  return awaitedLater(clientReport(client, opts.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS));
}

export interface HeldClientOptions extends Omit<ClientOptions, 'mode' | 'timeoutMs' | 'bytes' | 'firstWriteImmediate'> {
  /** Bytes each connection sends before it holds (idle). Ignored with `stream`. */
  bytes?: number;
  /** Instead: keep writing `chunk` every `pauseMs` until released (a live stream). */
  stream?: boolean;
  /** With halfClose: read nothing, even after the FIN, until released (echoed bytes stay queued unread). */
  holdReads?: boolean;
}

/**
 * A client whose connections stay open until the test releases them: tests
 * that look at live connections never depend on a stream lasting long enough.
 */
export interface HeldClient {
  readonly process: JsonLineProcess;
  /**
   * The local endpoints of all its connections, once each one holds: up, and
   * (without `stream`) with its bytes written. Rejects with the client's
   * output if it exits or the time runs out first.
   */
  holding(timeoutMs?: number): Promise<string[]>;
  /** Stops writing and FINs (SIGUSR2), without waiting; with holdReads the client still reads nothing. */
  stopWriting(): void;
  /** Releases the connections (FIN, then read to the server's FIN) and returns the client's report. */
  release(timeoutMs?: number): Promise<ClientReport>;
}

export function startHeldClient(opts: HeldClientOptions): HeldClient {
  const holdArgs = [opts.stream ? '--until-signal' : '--hold', ...(opts.holdReads ? ['--hold-reads'] : [])];
  const client = peerProcess('client', clientArgs({ ...opts, bytes: opts.stream ? 0 : (opts.bytes ?? 0) }, holdArgs), opts);
  const conns = opts.conns ?? 1;
  let writing = true;
  const stopWriting = (): void => {
    if (writing) client.signal('SIGUSR2');
    writing = false;
  };
  return {
    process: client,
    holding: (timeoutMs = DEFAULT_RESULTS_TIMEOUT_MS) =>
      client.waitUntil(
        (all) => {
          const held = events(all, 'holding').map((e) => e.local);
          return held.length >= conns ? held : undefined;
        },
        timeoutMs,
        `${conns} connections to hold`,
      ),
    stopWriting,
    release: (timeoutMs = DEFAULT_CLIENT_TIMEOUT_MS) => {
      stopWriting();
      if (opts.holdReads) client.signal('SIGUSR1');
      return clientReport(client, timeoutMs);
    },
  };
}

/** Runs `fn` with a held client and kills it afterwards: a test that fails before releasing leaves nothing running. */
export async function withHeldClient<T>(opts: HeldClientOptions, fn: (client: HeldClient) => Promise<T>): Promise<T> {
  const client = startHeldClient(opts);
  return runThenCleanUp(() => fn(client), () => client.process.kill());
}

export interface ExchangeOptions {
  server: Omit<ServerOptions, 'port'>;
  /** Connects to the server's port. */
  client: Omit<ClientOptions, 'port'>;
  resultsTimeoutMs?: number;
}

export interface ExchangeResult {
  client: ClientReport;
  server: ServerConnReport[];
  serverFionread: FionreadReport[];
}

/** Starts a server, runs one client against it, collects both sides' reports, stops the server. */
export async function exchange(opts: ExchangeOptions): Promise<ExchangeResult> {
  const server = await startServer(opts.server);
  return runThenCleanUp(async () => {
    const client = await runClient({ ...opts.client, port: server.port });
    const conns = client.conns.length;
    const serverReports = await server.results(conns, opts.resultsTimeoutMs);
    const serverFionread = opts.server.mode === 'fionread-check' ? await server.fionread(conns, opts.resultsTimeoutMs) : [];
    return { client, server: serverReports, serverFionread };
  }, server.stop);
}

export interface FionreadCheckOptions {
  server: Placement & { host: string };
  client: Placement & { host: string };
  /** Bytes queued in each direction before FIONREAD is read (default 32 KiB: fits an initial window). */
  bytes?: number;
  conns?: number;
  /** How long the server polls for the bytes to be queued (the client allows twice that). */
  fionreadTimeoutMs?: number;
}

export interface FionreadCheckResult extends ExchangeResult {
  /** Both sides' reports: each connection once as server, once as client. */
  fionread: FionreadReport[];
}

/**
 * Checks that FIONREAD counts bytes waiting in the receive queue, on both ends.
 * Each client connection sends `bytes` and stops; the server, which has not read
 * anything yet (pauseOnConnect), polls FIONREAD until it shows `bytes` or time
 * runs out, reports, then reads and echoes; the client, paused too, does the
 * same for the echo. The traffic itself is integrity-checked like any exchange.
 */
export async function fionreadCheck(opts: FionreadCheckOptions): Promise<FionreadCheckResult> {
  const bytes = opts.bytes ?? 32 * 1024;
  const result = await exchange({
    server: { ...opts.server, mode: 'fionread-check', bytes, fionreadTimeoutMs: opts.fionreadTimeoutMs },
    client: { ...opts.client, mode: 'fionread-check', bytes, conns: opts.conns, fionreadTimeoutMs: opts.fionreadTimeoutMs },
  });
  return { ...result, fionread: [...result.serverFionread, ...result.client.fionread] };
}
