/**
 * What the daemon left in the kernel: its pins (present, root-only,
 * compatible with this build, frozen) and its links (attached where the
 * configuration says).
 */
import fs from 'node:fs';
import path from 'node:path';
import * as bpf from '../kernel/libbpf';
import { DEFAULT_OBJECT_DIR, formatDifference, objectPath, withBpfObject } from '../kernel/bpf-object';
import { LAYOUT_VERSION } from '../kernel/bpf-layout';
import { LINK_PINS, linkPinPath, mapPinPath, SHARED_MAP_NAMES, SharedMapName, withPinnedFd } from '../kernel/pins';
import { sockopsMode } from '../cli/status';
import { Check, fail, pass, unprivileged } from './check';
import { isPermissionError, pinPrivilegeError } from '../kernel/pin-access';
import { isFrozen } from '../kernel/map-freeze';

/**
 * Maps user space may write: the daemon keeps sa_local current, sets
 * the mesh presets and the adaptive switch (sa_policy) at start and writes
 * the adaptive decisions (sa_decisions), and
 * socket-local storage is keyed by socket fds (a process can only reach the
 * storage of sockets it already holds). Every other map is written by the
 * programs alone and must be frozen.
 */
const WRITABLE_MAPS: ReadonlySet<SharedMapName> = new Set(['sa_local', 'sa_sk_state', 'sa_mesh_presets', 'sa_decisions', 'sa_policy']);


const RESTART_FIX = 'start (or restart) the daemon with this configuration: systemctl restart sockaccel';

/** Mode and owner problems of one pin-root entry, if any. */
function permissionProblem(file: string, wantMode: number): string | null {
  const st = fs.statSync(file);
  const mode = st.mode & 0o777;
  const problems = [mode !== wantMode && `mode ${mode.toString(8)} (want ${wantMode.toString(8)})`, st.uid !== 0 && `owner uid ${st.uid} (want 0)`].filter(Boolean);
  return problems.length > 0 ? `${path.basename(file)}: ${problems.join(', ')}` : null;
}

export function pinPermissionsCheck(pinRoot: string): Check {
  const id = 'pins.permissions';
  const title = 'pin directory and pins are root-only';
  const problems = [permissionProblem(pinRoot, 0o700), ...fs.readdirSync(pinRoot).map((n) => permissionProblem(path.join(pinRoot, n), 0o600))].filter(
    (p): p is string => p !== null,
  );
  if (problems.length > 0) {
    return fail(id, title, problems.join('; '), `chmod 700 ${pinRoot}; chmod 600 ${pinRoot}/*; chown -R root: ${pinRoot} (whoever opens a writable pin can read the maps and rewrite sa_local)`);
  }
  return pass(id, title, `${pinRoot} is 0700 and every pin 0600, owned by root`);
}

/**
 * Compares every pinned map with the same map in this build's object, with
 * the check the daemon runs before reusing it (BpfObject.pinnedMapDifferences):
 * what passes here, the daemon accepts, and the reverse.
 */
export function pinCompatibilityCheck(pinRoot: string, objectDir: string = DEFAULT_OBJECT_DIR): Check {
  const id = 'pins.compatible';
  const title = 'pinned maps match this build';
  return withBpfObject(objectPath(objectDir, 'sockops'), (obj) => {
    const missing: string[] = [];
    const diffs: string[] = [];
    for (const name of SHARED_MAP_NAMES) {
      const pin = mapPinPath(pinRoot, name);
      if (!fs.existsSync(pin)) {
        missing.push(path.basename(pin));
        continue;
      }
      for (const d of withPinnedFd(pin, (fd) => obj.pinnedMapDifferences(name, fd))) diffs.push(`${path.basename(pin)} ${formatDifference(d)}`);
    }
    if (missing.length > 0) return fail(id, title, `missing pins: ${missing.join(', ')}`, RESTART_FIX);
    if (diffs.length > 0) {
      return fail(id, title, diffs.join('; '), 'the pins come from another sockaccel version: run `sockaccel purge` once their connections have drained, then start this version');
    }
    return pass(id, title, `${SHARED_MAP_NAMES.length} maps, layout version ${LAYOUT_VERSION}`);
  });
}

export function frozenMapsCheck(pinRoot: string): Check {
  const id = 'pins.frozen';
  const title = 'program-only maps refuse syscall writes';
  const names = SHARED_MAP_NAMES.filter((n) => !WRITABLE_MAPS.has(n) && fs.existsSync(mapPinPath(pinRoot, n)));
  const writable = names.filter((n) => !isFrozen(mapPinPath(pinRoot, n))).map((n) => path.basename(mapPinPath(pinRoot, n)));
  if (writable.length > 0) {
    return fail(id, title, `writable through their pins: ${writable.join(', ')}; whoever opens one could plant a socket or forge pairing state`, 'restart the daemon: it freezes these maps when it pins them');
  }
  return pass(id, title, `${names.map((n) => path.basename(mapPinPath(pinRoot, n))).join(', ')} are frozen (EPERM for every fd)`);
}

export interface LinkState {
  readonly checks: Check[];
  /** Program ids our links run: to tell our programs from others. */
  readonly programIds: Set<number>;
}

/** The sock_ops link must run our accepting program on the configured cgroup; the sk_msg links must exist. */
export function linkChecks(pinRoot: string, cgroupPath: string, sockmapLinks: boolean): LinkState {
  const checks: Check[] = [];
  const programIds = new Set<number>();
  const sockopsPin = linkPinPath(pinRoot, 'sockops');
  const title = 'sock_ops link';
  if (!fs.existsSync(sockopsPin)) {
    checks.push(fail('links.sockops', title, `no link pinned at ${sockopsPin}: no connection is accelerated`, RESTART_FIX));
  } else {
    const info = withPinnedFd(sockopsPin, bpf.linkInfo, false);
    programIds.add(info.progId);
    const want = BigInt(fs.statSync(cgroupPath).ino);
    const mode = sockopsMode(sockopsPin);
    if (info.cgroupId !== want) {
      checks.push(fail('links.sockops', title, `attached to cgroup id ${info.cgroupId ?? 'none'}, but the configured ${cgroupPath} has id ${want}`, RESTART_FIX));
    } else if (mode !== 'accepting') {
      checks.push(fail('links.sockops', title, `on ${cgroupPath}, but ${mode}: the daemon is stopped, new connections stay plain TCP (existing ones keep their redirect)`, RESTART_FIX));
    } else {
      checks.push(pass('links.sockops', title, `program ${info.progId} accelerating new connections on ${cgroupPath}`));
    }
  }
  const msgLinks = (Object.keys(LINK_PINS) as (keyof typeof LINK_PINS)[]).filter((l) => l !== 'sockops');
  const present = msgLinks.filter((l) => fs.existsSync(linkPinPath(pinRoot, l)));
  for (const l of present) programIds.add(withPinnedFd(linkPinPath(pinRoot, l), bpf.linkInfo, false).progId);
  if (present.length === msgLinks.length) {
    checks.push(pass('links.sk_msg', 'sk_msg links', `${present.length} links pinned (${present.map((l) => LINK_PINS[l]).join(', ')})`));
  } else if (!sockmapLinks && present.length === 0) {
    checks.push(pass('links.sk_msg', 'sk_msg links', 'attached to the maps directly (this kernel has no sockmap links)'));
  } else {
    const missing = msgLinks.filter((l) => !present.includes(l)).map((l) => LINK_PINS[l]);
    checks.push(fail('links.sk_msg', 'sk_msg links', `missing: ${missing.join(', ')}; sockets inserted now would not be redirected`, RESTART_FIX));
  }
  return { checks, programIds };
}

export function pinRootCheck(pinRoot: string): Check {
  const title = 'daemon pins';
  let pins: string[];
  try {
    pins = fs.readdirSync(pinRoot);
  } catch (err) {
    // The pin directory is root-only: EACCES says nothing about whether the daemon runs.
    if (isPermissionError(err)) return unprivileged('pins.present', title, pinPrivilegeError(pinRoot, err).message, 'run doctor as root');
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    return fail('pins.present', title, `nothing pinned under ${pinRoot}: sockaccel is not running here`, `start it (systemctl start sockaccel), or pass the --pin-root it uses`);
  }
  return pass('pins.present', title, `${pins.length} pins under ${pinRoot}`);
}

