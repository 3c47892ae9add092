/**
 * IP prefixes in the form the local-endpoints LPM trie uses: 16 address
 * bytes, IPv4 as IPv4-mapped IPv6 (::ffff:a.b.c.d), so one trie serves both
 * families and an AF_INET6 socket with a mapped address matches IPv4 rules.
 */
import net from 'node:net';

export interface IpPrefix {
  /** prefix length in the 128-bit (mapped) space */
  readonly prefixlen: number;
  readonly addr: Buffer; // 16 bytes, network order
}

const V4_MAPPED = Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]);

export function parseIp(text: string): Buffer {
  const family = net.isIP(text);
  if (family === 4) return Buffer.concat([V4_MAPPED, Buffer.from(text.split('.').map(Number))]);
  if (family === 6) return parseIpv6(text);
  throw new Error(`not an IP address: ${text}`);
}

function parseIpv6(text: string): Buffer {
  // an embedded dotted quad (::ffff:1.2.3.4) becomes its two hex words
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.')) {
    const q = text.slice(lastColon + 1).split('.').map(Number);
    text = `${text.slice(0, lastColon + 1)}${((q[0] << 8) | q[1]).toString(16)}:${((q[2] << 8) | q[3]).toString(16)}`;
  }
  const words = (s: string) => (s === '' ? [] : s.split(':').map((w) => parseInt(w, 16)));
  const [left, right] = text.split('::');
  const l = words(left);
  const r = right === undefined ? [] : words(right);
  const all = right === undefined ? l : [...l, ...new Array(8 - l.length - r.length).fill(0), ...r];
  const out = Buffer.alloc(16);
  all.forEach((w, i) => out.writeUInt16BE(w, i * 2));
  return out;
}

/** Parses "a.b.c.d/n" or "x::/n" (a bare address is a host prefix). */
export function parsePrefix(cidr: string): IpPrefix {
  const [ip, len] = cidr.split('/');
  const family = net.isIP(ip);
  if (family === 0) throw new Error(`not an IP address: ${ip}`);
  const max = family === 4 ? 32 : 128;
  const bits = len === undefined ? max : Number(len);
  if (!Number.isInteger(bits) || bits < 0 || bits > max) throw new Error(`prefix length out of range 0..${max}: ${cidr}`);
  return { prefixlen: family === 4 ? 96 + bits : bits, addr: maskTo(parseIp(ip), family === 4 ? 96 + bits : bits) };
}

/** Whether `outer` holds every address of `inner`. */
export function prefixContains(outer: IpPrefix, inner: IpPrefix): boolean {
  return inner.prefixlen >= outer.prefixlen && maskTo(inner.addr, outer.prefixlen).equals(outer.addr);
}

function maskTo(addr: Buffer, bits: number): Buffer {
  const out = Buffer.from(addr);
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    out[i] &= (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

/** Human form, for logs and status: IPv4-mapped prefixes print as IPv4. */
export function formatPrefix(p: IpPrefix): string {
  return `${formatIp(p.addr)}/${isV4Mapped(p.addr) && p.prefixlen >= 96 ? p.prefixlen - 96 : p.prefixlen}`;
}

export function isV4Mapped(addr: Buffer): boolean {
  return addr.subarray(0, 12).equals(V4_MAPPED);
}

export function formatIp(addr: Buffer): string {
  if (isV4Mapped(addr)) return Array.from(addr.subarray(12)).join('.');
  const words = Array.from({ length: 8 }, (_, i) => addr.readUInt16BE(i * 2).toString(16));
  // compress the longest run of zero words, as RFC 5952 asks
  let best = { at: -1, len: 0 };
  for (let i = 0; i < 8; ) {
    let j = i;
    while (j < 8 && words[j] === '0') j++;
    if (j - i > best.len && j - i > 1) best = { at: i, len: j - i };
    i = j === i ? i + 1 : j;
  }
  if (best.at < 0) return words.join(':');
  return `${words.slice(0, best.at).join(':')}::${words.slice(best.at + best.len).join(':')}`;
}

export const LOOPBACK_PREFIXES: readonly string[] = ['127.0.0.0/8', '::1/128'];
