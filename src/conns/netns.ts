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

/** A network namespace file: a bind mount under /run/netns, or /proc/<pid>/ns/net. */
export interface NetnsFile {
  readonly name: string;
  readonly path: string;
}

/** The named namespaces under `dir` (`ip netns`, CNI pod namespaces). */
export function namedNetns(dir = NETNS_DIR): NetnsFile[] {
  try {
    return fs.readdirSync(dir).map((name) => ({ name, path: path.join(dir, name) }));
  } catch {
    return [];
  }
}

/** One file per namespace that has a process in it, named by that process. */
export function processNetns(proc = '/proc'): NetnsFile[] {
  const out: NetnsFile[] = [];
  for (const pid of fs.readdirSync(proc)) {
    if (/^\d+$/.test(pid)) out.push({ name: `pid ${pid}`, path: path.join(proc, pid, 'ns', 'net') });
  }
  return out;
}

/**
 * Calls `visit` once inside each distinct namespace among `files` (the same
 * namespace reached twice, by another name or process, is visited once),
 * with this thread moved there by setns(2) and moved home again after.
 * Namespaces we may not open or enter (gone meanwhile, no CAP_SYS_ADMIN) are
 * passed over. The namespace this thread starts in is not visited unless
 * listed.
 */
export function inEachNetns(files: readonly NetnsFile[], visit: (ns: NetnsFile) => void): void {
  const home = fs.openSync('/proc/thread-self/ns/net', 'r');
  const seen = new Set<string>();
  try {
    for (const ns of files) {
      let nsFd: number;
      try {
        nsFd = fs.openSync(ns.path, 'r');
        const st = fs.fstatSync(nsFd);
        const id = `${st.dev}:${st.ino}`;
        if (seen.has(id)) {
          fs.closeSync(nsFd);
          continue;
        }
        seen.add(id);
        enter(nsFd, ns.name);
      } catch {
        continue; // removed meanwhile, or not ours to open or enter
      }
      try {
        visit(ns);
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
}

/**
 * cookie → name: "host" for the namespace we run in, and each named
 * namespace under `dir`. Namespaces we may not enter stay unnamed.
 */
export function netnsNames(dir = NETNS_DIR): Map<bigint, string> {
  const names = new Map<bigint, string>([[currentNetnsCookie(), 'host']]);
  inEachNetns(namedNetns(dir), (ns) => {
    const cookie = currentNetnsCookie();
    if (!names.has(cookie)) names.set(cookie, ns.name);
  });
  return names;
}
