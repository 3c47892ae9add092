/**
 * Names for network-namespace cookies. The programs record each end's netns
 * as a cookie (bpf_get_netns_cookie), which means nothing to a person; the
 * namespaces that have names are those bind-mounted under /run/netns (`ip
 * netns`, and the CNI's pod namespaces on containerd/CRI-O nodes). Each is
 * entered briefly with setns(2) on this thread to read its cookie from a
 * socket made there (SO_NETNS_COOKIE, 5.14+).
 */
import fs from 'node:fs';
import path from 'node:path';
import ref from '@2060.io/ref-napi';
import { close, getErrno, openLibrary, LibbpfError } from '../libc';

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOL_SOCKET = 1;
const SO_NETNS_COOKIE = 71;
const CLONE_NEWNET = 0x40000000;

export const NETNS_DIR = '/run/netns';

const SIGNATURES = {
  socket: ['int', ['int', 'int', 'int']],
  getsockopt: ['int', ['int', 'int', 'int', 'pointer', 'pointer']],
  setns: ['int', ['int', 'int']],
} as const;

let native: ReturnType<typeof open> | undefined;
const open = () => openLibrary('libc.so.6', SIGNATURES);
const libc = () => (native ??= open());

function checked(ret: number, call: string): number {
  if (ret < 0) throw new LibbpfError(call, getErrno());
  return ret;
}

/** The cookie of the namespace this thread is in. */
export function currentNetnsCookie(): bigint {
  const fd = checked(libc().socket(AF_INET, SOCK_DGRAM, 0), 'socket');
  try {
    const value = Buffer.alloc(8);
    const len = ref.alloc('uint32', 8);
    checked(libc().getsockopt(fd, SOL_SOCKET, SO_NETNS_COOKIE, value, len), 'getsockopt(SO_NETNS_COOKIE)');
    return value.readBigUInt64LE(0);
  } finally {
    close(fd);
  }
}

function enter(nsFd: number, what: string): void {
  checked(libc().setns(nsFd, CLONE_NEWNET), `setns(${what})`);
}

/**
 * cookie → name: "host" for the namespace we run in, and each named
 * namespace under `dir`. Namespaces we may not enter (no CAP_SYS_ADMIN)
 * stay unnamed.
 */
export function netnsNames(dir = NETNS_DIR): Map<bigint, string> {
  const names = new Map<bigint, string>([[currentNetnsCookie(), 'host']]);
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return names;
  }
  const home = fs.openSync('/proc/thread-self/ns/net', 'r');
  try {
    for (const name of entries) {
      let nsFd: number;
      try {
        nsFd = fs.openSync(path.join(dir, name), 'r');
      } catch {
        continue; // removed meanwhile, or not ours to open
      }
      try {
        enter(nsFd, name);
      } catch {
        fs.closeSync(nsFd);
        continue;
      }
      try {
        const cookie = currentNetnsCookie();
        if (!names.has(cookie)) names.set(cookie, name);
      } finally {
        fs.closeSync(nsFd);
        // Staying in a foreign namespace would make every later socket of
        // this process live there: failing to return is fatal, not skippable.
        enter(home, 'back home');
      }
    }
  } finally {
    fs.closeSync(home);
  }
  return names;
}
