/**
 * Live probes of how FIONREAD (ioctl SIOCINQ: "how many bytes can I read")
 * behaves on sockets in a sockhash, the hazard behind every kernel row of
 * the README's kernel table:
 *
 * - paired: both ends of a loopback connection in a sockhash with an sk_msg
 *   program that redirects each send into the peer's receive queue, as
 *   sockaccel's data path does. On Linux 6.1 FIONREAD reads 0 on both ends
 *   while the redirected bytes wait; 6.12 and 6.18 count them.
 * - one-sided: one socket in a sockhash (no program), its data arriving over
 *   plain TCP. On 6.18.44 FIONREAD reads 0 there; sockaccel's pairing never
 *   lets that happen (README, "Pairing").
 *
 * Both run on a private loopback connection and maps of their own, created
 * here, never pinned and never attached to a cgroup: live traffic cannot
 * be touched, and closing the fds frees everything. The daemon runs the
 * paired probe before it attaches anything; doctor runs both.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import * as bpf from './libbpf';
import { LibbpfError } from './libbpf';
import { BpfObject, OBJECT_FILES, objectPath } from './bpf-object';
import { close, fionread, tcpBytesReceived } from './libc';

/** What each end sends in the paired probe: the size of the report. */
export const PAIRED_PROBE_BYTES = 32 * 1024;
export const ONE_SIDED_PROBE_BYTES = 4096;
export const PROBE_OBJECT = OBJECT_FILES.fionreadProbe;
/** The probe's sk_msg program, as bpf/fionread_probe.bpf.c names it. */
export const PROBE_PROGRAM = 'sa_probe_redirect';

/**
 * How long FIONREAD may lag behind the bytes. An ingress redirect queues in
 * the sender's send() and plain loopback data lands within it too, so a
 * correct kernel shows them at once; the deadline only absorbs a loaded
 * machine (or a TCG VM). It is paid in full only on a kernel that miscounts.
 */
const SETTLE_DEADLINE_MS = 2000;
const POLL_MS = 10;
/** For the bytes to be read back; generous, as reads are what we confirm. */
const READ_DEADLINE_MS = 10_000;

const EBUSY = 16;

/** One receiving end: FIONREAD while the bytes waited, and what it then read. */
export interface EndReading {
  readonly fionread: number;
  /** Bytes read back after the FIONREAD reading. */
  readonly read: number;
  /** Whether the bytes took the redirect (the receiver's TCP byte counter did not move). */
  readonly redirected: boolean;
}

export interface PairedMeasurement {
  readonly bytes: number;
  readonly server: EndReading;
  readonly client: EndReading;
  /** Whose sockhash held the pair: ours, or a sockmap program that had taken the sockets first. */
  readonly via: 'probe map' | 'another sockmap program';
}

export interface OneSidedMeasurement {
  readonly bytes: number;
  /** FIONREAD while the receiver is in the sockhash. */
  readonly inMap: number;
  /** FIONREAD once it is out again: what really is queued. */
  readonly queued: number;
  /**
   * Whether the bytes came over TCP, as this case needs. Not so when a live
   * sockmap program (a sockaccel whose cgroup holds this process) had taken
   * the connection and redirected them.
   */
  readonly overTcp: boolean;
}

/**
 * - counted: FIONREAD showed every redirected byte on both ends.
 * - blind: the redirected bytes were there (read back in full) but FIONREAD
 *   showed fewer on at least one end. Readers that size reads with FIONREAD
 *   can stall.
 * - inconclusive: the probe could not build the situation (say, the bytes did
 *   not take the redirect); `reason` says why.
 */
export type PairedVerdict =
  | { readonly kind: 'counted'; readonly measurement: PairedMeasurement }
  | { readonly kind: 'blind'; readonly measurement: PairedMeasurement }
  | { readonly kind: 'inconclusive'; readonly reason: string; readonly measurement?: PairedMeasurement };

export function judgePaired(m: PairedMeasurement): PairedVerdict {
  const ends = [m.server, m.client];
  if (ends.some((e) => e.read !== m.bytes)) {
    return { kind: 'inconclusive', reason: `only ${m.server.read} and ${m.client.read} of ${m.bytes} bytes arrived`, measurement: m };
  }
  if (ends.some((e) => !e.redirected)) {
    return { kind: 'inconclusive', reason: 'the bytes went over plain TCP instead of the redirect', measurement: m };
  }
  if (ends.every((e) => e.fionread === m.bytes)) return { kind: 'counted', measurement: m };
  return { kind: 'blind', measurement: m };
}

/** "FIONREAD 0 on the server and 0 on the client while 32768 redirected bytes waited on each". */
export function describePaired(m: PairedMeasurement): string {
  const via = m.via === 'probe map' ? '' : ' (redirected by the sockmap program that had already taken the probe\'s connection)';
  return `FIONREAD ${m.server.fionread} on the server and ${m.client.fionread} on the client while ${m.bytes} redirected bytes waited on each${via}`;
}

/** The kernel fd behind a net.Socket (Node keeps it on its libuv handle). */
function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('no file descriptor on the socket');
  return fd;
}

interface LoopbackPair {
  readonly client: net.Socket;
  readonly server: net.Socket;
  close(): void;
}

/** A connected loopback pair, both ends paused: nothing is read until we say so. */
async function loopbackPair(): Promise<LoopbackPair> {
  const listener = net.createServer({ pauseOnConnect: true });
  const sockets: net.Socket[] = [];
  const closeAll = () => {
    for (const s of sockets) s.destroy();
    listener.close();
  };
  try {
    await new Promise<void>((resolve, reject) => {
      listener.once('error', reject);
      listener.listen(0, '127.0.0.1', resolve);
    });
    const accepted = new Promise<net.Socket>((resolve) => listener.once('connection', resolve));
    const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
    client.pause();
    sockets.push(client);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    const server = await accepted;
    sockets.push(server);
    return { client, server, close: closeAll };
  } catch (err) {
    closeAll();
    throw err;
  }
}

function write(socket: net.Socket, bytes: number): Promise<void> {
  return new Promise((resolve, reject) => socket.write(Buffer.alloc(bytes, 0x5a), (err) => (err ? reject(err) : resolve())));
}

/** Polls FIONREAD until it shows `bytes` or the settle deadline passes; returns the last value. */
async function settledFionread(fd: number, bytes: number): Promise<number> {
  const deadline = Date.now() + SETTLE_DEADLINE_MS;
  for (;;) {
    const n = fionread(fd);
    if (n >= bytes || Date.now() >= deadline) return n;
    await sleep(POLL_MS);
  }
}

/** Resumes the socket and reads until `bytes` arrived or the deadline passed; returns how many did. */
function readBack(socket: net.Socket, bytes: number): Promise<number> {
  return new Promise((resolve) => {
    let got = 0;
    const done = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.pause();
      resolve(got);
    };
    const onData = (chunk: Buffer) => {
      got += chunk.length;
      if (got >= bytes) done();
    };
    const timer = setTimeout(done, READ_DEADLINE_MS);
    socket.on('data', onData);
    socket.resume();
  });
}

async function receive(receiver: net.Socket, bytes: number, receivedBefore: bigint): Promise<EndReading> {
  const fd = socketFd(receiver);
  const value = await settledFionread(fd, bytes);
  // Read before comparing counters: a plain segment may still be in flight.
  const read = await readBack(receiver, bytes);
  return { fionread: value, read, redirected: tcpBytesReceived(fd) === receivedBefore };
}

const u32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(n);
  return b;
};
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(n));
  return b;
};

/**
 * Puts both ends in the probe's sockhash, keyed by local port. EBUSY means a
 * socket already carries another sockmap program (a sockaccel data path
 * whose cgroup holds this process, or another accelerator took the
 * connection during its handshake): then the probe measures through that
 * redirect, and the TCP byte counters tell whether the bytes took it.
 */
function insertPair(mapFd: number, pair: LoopbackPair): PairedMeasurement['via'] {
  try {
    for (const s of [pair.client, pair.server]) bpf.bpfMapUpdateElem(mapFd, u32(s.localPort!), u64(socketFd(s)));
    return 'probe map';
  } catch (err) {
    if (err instanceof LibbpfError && err.errno === EBUSY) return 'another sockmap program';
    throw err;
  }
}

/**
 * The paired probe: each end sends PAIRED_PROBE_BYTES, redirected into the
 * other; FIONREAD is read on both while the bytes wait, then the bytes are
 * read back. Throws when it cannot run (no privilege, objects missing).
 */
export async function measurePaired(objectDir: string): Promise<PairedMeasurement> {
  const obj = BpfObject.open(objectPath(objectDir, 'fionreadProbe'));
  let pair: LoopbackPair | undefined;
  try {
    obj.load();
    const mapFd = obj.mapFd('sa_probe_pair');
    const progFd = obj.programFd(PROBE_PROGRAM);
    // The msg program is copied into a socket when it is inserted: attach first.
    bpf.bpfProgAttach(progFd, mapFd, bpf.BPF.SK_MSG_VERDICT);
    pair = await loopbackPair();
    const via = insertPair(mapFd, pair);
    const before = { server: tcpBytesReceived(socketFd(pair.server)), client: tcpBytesReceived(socketFd(pair.client)) };
    const bytes = PAIRED_PROBE_BYTES;
    await Promise.all([write(pair.client, bytes), write(pair.server, bytes)]);
    const server = await receive(pair.server, bytes, before.server);
    const client = await receive(pair.client, bytes, before.client);
    return { bytes, server, client, via };
  } finally {
    // Closing the sockets takes them out of the map; closing the object
    // drops the last user reference to the map, which releases the program.
    pair?.close();
    obj.close();
  }
}

export async function probePaired(objectDir: string): Promise<PairedVerdict> {
  return judgePaired(await measurePaired(objectDir));
}

/**
 * The one-sided probe: the accepted end alone in a scratch sockhash (no
 * program), ONE_SIDED_PROBE_BYTES sent to it over plain TCP, FIONREAD in the
 * map compared with FIONREAD once it is out again.
 */
export async function measureOneSided(): Promise<OneSidedMeasurement> {
  const bytes = ONE_SIDED_PROBE_BYTES;
  let mapFd = -1;
  const pair = await loopbackPair();
  try {
    const fd = socketFd(pair.server);
    // Not frozen, created here: user space may insert.
    mapFd = bpf.bpfMapCreate(bpf.BPF.MAP_TYPE_SOCKHASH, 'sa_doctor_probe', 4, 8, 1);
    const key = u32(0);
    bpf.bpfMapUpdateElem(mapFd, key, u64(fd));
    const receivedBefore = tcpBytesReceived(fd);
    await write(pair.client, bytes);
    // Wait for the bytes to be queued (TCP counts them as they land), not for a fixed time.
    const overTcp = () => tcpBytesReceived(fd) - receivedBefore >= BigInt(bytes);
    const deadline = Date.now() + SETTLE_DEADLINE_MS;
    while (!overTcp() && Date.now() < deadline) await sleep(POLL_MS);
    const inMap = fionread(fd);
    bpf.bpfMapDeleteElem(mapFd, key);
    return { bytes, inMap, queued: fionread(fd), overTcp: overTcp() };
  } finally {
    if (mapFd >= 0) close(mapFd);
    pair.close();
  }
}
