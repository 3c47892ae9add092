/**
 * One fixed server port per case for a whole bench run. The daemon learns
 * per service, and a service is where the client connects (address and
 * port): the adaptive side's warm-up and every round of a case must reach the
 * same one, or each run would start from nothing. Ports are chosen below the
 * kernel's ephemeral range (no client's own port can take them between runs)
 * and proven free by binding them, at run start.
 */
import fs from 'node:fs';
import net from 'node:net';
import { EnvironmentError } from '../common/errors';

/** The lowest port the bench picks from: above well-known services and the mesh's 15000-15090. */
export const FIRST_PORT = 20_000;

/** The kernel's ephemeral range, "lo hi" in /proc/sys/net/ipv4/ip_local_port_range. */
export function ephemeralRange(text = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8')): { lo: number; hi: number } {
  const [lo, hi] = text.trim().split(/\s+/).map(Number);
  if (!Number.isInteger(lo) || !Number.isInteger(hi)) throw new RangeError(`bad ip_local_port_range "${text.trim()}"`);
  return { lo: lo!, hi: hi! };
}

/** Candidate ports in [FIRST_PORT, end), in a random order (two benches at once rarely collide), skipping `avoid`. */
export function candidatePorts(end: number, avoid: ReadonlySet<number>, random: () => number = Math.random): number[] {
  const ports: number[] = [];
  for (let p = FIRST_PORT; p < end; p++) if (!avoid.has(p)) ports.push(p);
  for (let i = ports.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [ports[i], ports[j]] = [ports[j]!, ports[i]!];
  }
  return ports;
}

/** True when nothing listens or is bound on `port` (IPv4 and IPv6, any address). */
function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen({ port, host: '::', ipv6Only: false, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** `count` distinct ports free on this machine now. */
export async function chooseFreePorts(count: number, avoid: ReadonlySet<number> = new Set()): Promise<number[]> {
  const { lo } = ephemeralRange();
  const end = lo > FIRST_PORT + count ? lo : 65_536;
  const chosen: number[] = [];
  for (const port of candidatePorts(end, avoid)) {
    if (chosen.length === count) break;
    if (await bindable(port)) chosen.push(port);
  }
  if (chosen.length < count) throw new EnvironmentError(`only ${chosen.length} of the ${count} TCP ports the bench needs are free`);
  return chosen;
}
