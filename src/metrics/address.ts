/**
 * The metrics listen address, "host:port" or "[ipv6]:port". Only IP
 * literals: resolving a name at startup would tie the daemon to DNS, and an
 * address the operator can read is an address they can audit (loopback
 * unless they chose otherwise).
 */
import net from 'node:net';

export interface ListenAddress {
  readonly host: string;
  readonly port: number;
}

export function parseListenAddress(text: string): ListenAddress {
  const m = /^(?:\[([^\]]+)\]|([^:[\]]+)):(\d+)$/.exec(text);
  if (!m) throw new Error('must be host:port, with an IPv6 host in brackets ([::1]:9464)');
  const host = m[1] ?? m[2];
  if (net.isIP(host) === 0) throw new Error(`host "${host}" is not an IP address`);
  if (m[1] !== undefined && net.isIP(host) !== 6) throw new Error('only IPv6 addresses go in brackets');
  const port = Number(m[3]);
  if (port < 1 || port > 65535) throw new Error(`port ${m[3]} is not in 1..65535`);
  return { host, port };
}

export function formatListenAddress(a: ListenAddress): string {
  return net.isIP(a.host) === 6 ? `[${a.host}]:${a.port}` : `${a.host}:${a.port}`;
}

/** Whether only this host can connect: 127.0.0.0/8 or ::1. */
export function isLoopback(host: string): boolean {
  return host === '::1' || (net.isIP(host) === 4 && host.startsWith('127.'));
}
