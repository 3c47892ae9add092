/**
 * Live probe of a kernel hazard: a socket that sits in a sockhash but
 * receives its data over plain TCP (its peer was never inserted) may report
 * FIONREAD 0 while bytes are queued. Applications that size their reads with
 * FIONREAD (nginx, Java, .NET) then stall.
 *
 * The probe builds exactly that situation on loopback: a scratch sockhash of
 * its own (not frozen, created here, so user space may insert), the accepted
 * socket in it, data sent over plain TCP, and FIONREAD compared with what
 * the socket reports once it is out of the map again.
 */
import net from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { BPF, bpfMapCreate, bpfMapDeleteElem, bpfMapUpdateElem } from '../kernel/libbpf';
import { close, fionread } from '../kernel/libc';
import { Check, fail, pass, warn } from './check';

const PROBE_BYTES = 4096;
// Loopback delivers within the sending syscall; this only absorbs a busy CPU.
const SETTLE_MS = 50;

/** The kernel fd behind a net.Socket (Node keeps it on its libuv handle). */
function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) throw new Error('no file descriptor on the socket');
  return fd;
}

export interface FionreadMeasurement {
  /** FIONREAD while the receiver is in the sockhash. */
  readonly inMap: number;
  /** FIONREAD once it is out again: what really is queued. */
  readonly queued: number;
}

/** Runs the probe; throws when it cannot (no privilege to create a sockhash). */
export async function measureFionread(): Promise<FionreadMeasurement> {
  const server = net.createServer({ pauseOnConnect: true });
  const sockets: net.Socket[] = [];
  let mapFd = -1;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
    const accepted = new Promise<net.Socket>((resolve) => server.once('connection', resolve));
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    sockets.push(client);
    await new Promise<void>((resolve, reject) => {
      client.once('connect', resolve);
      client.once('error', reject);
    });
    const receiver = await accepted;
    sockets.push(receiver);
    const fd = socketFd(receiver);

    mapFd = bpfMapCreate(BPF.MAP_TYPE_SOCKHASH, 'sa_doctor_probe', 4, 8, 1);
    const key = Buffer.alloc(4);
    const value = Buffer.alloc(8);
    value.writeBigUInt64LE(BigInt(fd));
    bpfMapUpdateElem(mapFd, key, value);
    await new Promise<void>((resolve, reject) => client.write(Buffer.alloc(PROBE_BYTES, 0x5a), (err) => (err ? reject(err) : resolve())));
    await sleep(SETTLE_MS);
    const inMap = fionread(fd);
    bpfMapDeleteElem(mapFd, key);
    return { inMap, queued: fionread(fd) };
  } finally {
    if (mapFd >= 0) close(mapFd);
    for (const s of sockets) s.destroy();
    server.close();
  }
}

const TITLE = 'FIONREAD on a socket in a sockhash';

export function fionreadCheck(m: FionreadMeasurement): Check {
  if (m.queued !== PROBE_BYTES) {
    return warn('kernel.fionread', TITLE, `inconclusive: ${m.queued} of ${PROBE_BYTES} bytes arrived`, 'run doctor again on a less busy moment');
  }
  if (m.inMap === m.queued) {
    return pass('kernel.fionread', TITLE, `FIONREAD ${m.inMap} with ${m.queued} bytes queued over plain TCP: correct`);
  }
  return warn(
    'kernel.fionread',
    TITLE,
    `FIONREAD ${m.inMap} while ${m.queued} bytes were queued over plain TCP. ` +
      'Consequence: a socket in a sockhash whose data does not come through the redirect looks empty, and ' +
      'applications that size reads with FIONREAD (nginx, Java, .NET) stall. sockaccel avoids it by pairing: ' +
      'a socket enters the map only together with its peer, so all its data is redirected, and a client whose ' +
      'server never paired leaves the map on the first plain segment, before that data is queued.',
    'nothing to do for sockaccel; other sockmap users on this node (see the program checks) can be hit. A kernel with the upstream fix removes the hazard',
  );
}

export async function fionreadProbeCheck(): Promise<Check> {
  try {
    return fionreadCheck(await measureFionread());
  } catch (err) {
    return fail('kernel.fionread', TITLE, `the probe could not run: ${(err as Error).message}`, 'run doctor as root (creating a sockhash needs CAP_BPF and CAP_NET_ADMIN)');
  }
}
