// Strict CIDR parsing for the local-endpoints prefixes: the BPF side keys an
// LPM trie by (prefix length, address bytes), so a prefix with host bits set
// would silently match a different network than the user wrote.
import { isIP } from 'node:net';

export interface Cidr {
  readonly family: 4 | 6;
  /** Network address bytes in network order: 4 for IPv4, 16 for IPv6. */
  readonly bytes: Uint8Array;
  readonly prefixLength: number;
  /** Canonical text form, e.g. '10.0.0.0/8' or 'fd00::/64'. */
  readonly text: string;
}

function ipv4Bytes(address: string): number[] {
  return address.split('.').map(Number);
}

/** `address` must already be valid IPv6 text (net.isIP === 6) without a zone. */
function ipv6Bytes(address: string): number[] {
  // A trailing dotted quad (::ffff:10.0.0.1) stands for the last two groups.
  let hex = address;
  if (address.includes('.')) {
    const split = address.lastIndexOf(':') + 1;
    const [a, b, c, d] = ipv4Bytes(address.slice(split));
    hex = `${address.slice(0, split)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const groupsOf = (part: string): string[] => (part === '' ? [] : part.split(':'));
  const [head = '', tail] = hex.split('::');
  const groups =
    tail === undefined
      ? groupsOf(head)
      : [...groupsOf(head), ...Array<string>(8 - groupsOf(head).length - groupsOf(tail).length).fill('0'), ...groupsOf(tail)];
  return groups.flatMap((group) => {
    const value = parseInt(group, 16);
    return [value >> 8, value & 0xff];
  });
}

/** RFC 5952 form: lower case, no leading zeros, the longest run (>= 2) of zero groups as '::'. */
function formatIpv6(bytes: Uint8Array): string {
  const groups = Array.from({ length: 8 }, (_, i) => (bytes[2 * i] << 8) | bytes[2 * i + 1]);
  let runStart = -1;
  let runLength = 0;
  for (let i = 0; i < 8; i++) {
    let length = 0;
    while (i + length < 8 && groups[i + length] === 0) length++;
    if (length > runLength && length >= 2) {
      runStart = i;
      runLength = length;
    }
  }
  const hex = (from: number, to: number): string => groups.slice(from, to).map((g) => g.toString(16)).join(':');
  return runStart === -1 ? hex(0, 8) : `${hex(0, runStart)}::${hex(runStart + runLength, 8)}`;
}

function formatAddress(family: 4 | 6, bytes: Uint8Array): string {
  return family === 4 ? bytes.join('.') : formatIpv6(bytes);
}

/**
 * Parses 'address/prefix'. Throws an Error whose message quotes the input and
 * says what is wrong (and, for host bits, which network was probably meant).
 */
export function parseCidr(input: string): Cidr {
  const slash = input.indexOf('/');
  if (slash === -1) {
    throw new Error(`"${input}" has no prefix length (write e.g. "${input}/${isIP(input) === 6 ? 128 : 32}")`);
  }
  const address = input.slice(0, slash);
  const prefixText = input.slice(slash + 1);
  if (address.includes('%')) throw new Error(`"${input}": zone indexes (%...) are not allowed in a CIDR`);
  const version = isIP(address);
  if (version !== 4 && version !== 6) throw new Error(`"${input}": "${address}" is not an IPv4 or IPv6 address`);
  const family: 4 | 6 = version;
  const maxPrefix = family === 4 ? 32 : 128;
  const prefixLength = Number(prefixText);
  if (!/^\d{1,3}$/.test(prefixText) || prefixLength > maxPrefix) {
    throw new Error(`"${input}": prefix length must be 0..${maxPrefix} for IPv${family}`);
  }
  const bytes = Uint8Array.from(family === 4 ? ipv4Bytes(address) : ipv6Bytes(address));
  const network = bytes.map((byte, i) => {
    const bitsKept = Math.min(8, Math.max(0, prefixLength - 8 * i));
    return byte & (0xff << (8 - bitsKept));
  });
  const text = `${formatAddress(family, network)}/${prefixLength}`;
  if (network.some((byte, i) => byte !== bytes[i])) {
    throw new Error(`${input} has host bits set; did you mean ${text}?`);
  }
  return { family, bytes: network, prefixLength, text };
}
