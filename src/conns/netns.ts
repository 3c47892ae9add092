/**
 * Network namespaces for `sockaccel conns`: a walk that runs code inside
 * each one (entered briefly with setns(2) on this thread), and names for
 * their cookies. The programs record each end's netns as a cookie
 * (bpf_get_netns_cookie), which means nothing to a person; the namespaces
 * that have names are those bind-mounted under /run/netns (`ip netns`, and
 * the CNI's pod namespaces on containerd/CRI-O nodes), whose cookies are
 * read from a socket made inside (SO_NETNS_COOKIE, 5.14+).
 */
import fs from 'node:fs';
import path from 'node:path';
import ref from '@2060.io/ref-napi';
import { close, LibbpfError } from '../kernel/libc';
import { bindLibrary, getErrno } from '../kernel/native';

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

const libc = bindLibrary('libc.so.6', SIGNATURES);

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

const HOME_NETNS: NetnsFile = { name: 'host', path: '/proc/thread-self/ns/net' };

/** Identity of the namespace behind a namespace file (stat follows it to the nsfs inode). */
function netnsId(file: string): string {
  const st = fs.statSync(file);
  return `${st.dev}:${st.ino}`;
}

/**
 * Calls `visit` once in each distinct network namespace: first in the one
 * this thread is in (HOME_NETNS), then in each of `files` that is another
 * one (a namespace reached again, by another name or process, is skipped),
 * with this thread moved there by setns(2) and moved home again after.
 * Namespaces we may not open or enter (gone meanwhile, no CAP_SYS_ADMIN) are
 * passed over.
 */
export function inEachNetns(files: readonly NetnsFile[], visit: (ns: NetnsFile) => void): void {
  const seen = new Set([netnsId(HOME_NETNS.path)]);
  visit(HOME_NETNS);
  const home = fs.openSync(HOME_NETNS.path, 'r');
  try {
    for (const ns of files) {
      let nsFd: number;
      try {
        const id = netnsId(ns.path);
        if (seen.has(id)) continue;
        seen.add(id);
        nsFd = fs.openSync(ns.path, 'r');
      } catch {
        continue; // removed meanwhile, or not ours to look at
      }
      try {
        enter(nsFd, ns.name);
      } catch {
        fs.closeSync(nsFd);
        continue; // not ours to enter
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
  const names = new Map<bigint, string>();
  inEachNetns(namedNetns(dir), (ns) => names.set(currentNetnsCookie(), ns.name));
  return names;
}
