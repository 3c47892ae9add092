// Strict CIDR syntax for the localCidrs setting. The trie encoding
// (ip-prefix.ts) masks host bits and reads a bare address as a host prefix;
// in a configuration file both are more likely mistakes, so they are rejected
// here, naming the network that was probably meant.
import { isIP } from 'node:net';
import { formatPrefix, parseIp, parsePrefix } from './ip-prefix';

/** Throws an Error quoting `input` and saying what is wrong with it. */
export function checkCidr(input: string): void {
  const slash = input.indexOf('/');
  if (slash === -1) {
    throw new Error(`"${input}" has no prefix length (write e.g. "${input}/${isIP(input) === 6 ? 128 : 32}")`);
  }
  const address = input.slice(0, slash);
  const prefixText = input.slice(slash + 1);
  if (address.includes('%')) throw new Error(`"${input}": zone indexes (%...) are not allowed in a CIDR`);
  const family = isIP(address);
  if (family === 0) throw new Error(`"${input}": "${address}" is not an IPv4 or IPv6 address`);
  const maxPrefix = family === 4 ? 32 : 128;
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > maxPrefix) {
    throw new Error(`"${input}": prefix length must be 0..${maxPrefix} for IPv${family}`);
  }
  const network = parsePrefix(input);
  if (!network.addr.equals(parseIp(address))) {
    throw new Error(`${input} has host bits set; did you mean ${formatPrefix(network)}?`);
  }
}
