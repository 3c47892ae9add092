/**
 * `sockaccel purge [--force] [--wait-seconds N]`: removes everything sockaccel
 * keeps in the kernel under a pin root (the sock_ops link on the cgroup, the
 * sk_msg links, the maps) once no accelerated socket uses it any more.
 *
 * Order, and why:
 *  1. The instance lock: no daemon may run (it would lose its data path) or
 *     start while we remove its pins.
 *  2. A sock_ops link still running the accepting program (the daemon crashed
 *     or was killed, so nobody drained it) is detached at once, else new
 *     connections would keep entering the maps while we wait for them to
 *     empty. A draining link stays: it still guards in-flight handshakes.
 *  3. Wait until the sockhashes are empty: accelerated connections close by
 *     themselves. Still in use when the wait is over: refuse, unless --force.
 *  4. --force with sockets left: make every sk_msg program that holds one
 *     sockhash hold both (src/kernel/sockhash-hold.ts; the daemon binds its
 *     own at load, this covers programs of older builds).
 *  5. Detach and unpin the sock_ops link, unpin the sk_msg links and maps,
 *     remove the pin root.
 *
 * What --force costs (measured on 6.18, see test/integration/lifecycle.test.ts):
 * no bytes. A socket in a sockhash holds the sk_msg program it got at
 * insertion, and after step 4 that program holds both sockhashes, so the maps
 * outlive their pins until the last such socket closes, and those connections
 * stay redirected to the end, even when one end closes while the other still
 * has bytes to read. Without step 4 that was not so: a program held only the
 * map it redirects into, and the first end to close freed the other end's map
 * and, with it, that end's unread bytes. But the connections are then
 * invisible: no pin, no status, no counters, and a later daemon makes new maps
 * beside them, so they keep the old programs until they close. And a handshake
 * in flight at that moment loses the sock_ops guard that takes a one-sided
 * client back out of the map, which can leave it with the FIONREAD-0 hazard
 * (README, "The FIONREAD probe") for that connection's life.
 */
import fs from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ParsedCommandLine } from './cli-args';
import { loadConfig } from '../config/config';
import { PinConflictError, UsageError } from '../common/errors';
import { acquireInstanceLock } from '../daemon/instance-lock';
import { detachSockops } from '../daemon/loader';
import { LINK_PINS, linkPinPath, mapPinPath, pinExists, SHARED_MAP_NAMES, withPinnedFd } from '../kernel/pins';
import { readStatus } from './status';
import { explainPinError, pinPresent } from '../kernel/pin-access';
import { removeDeadRuns } from '../bench/leftovers';
import { bindSockhashesToEveryProgram } from '../kernel/sockhash-hold';

export const DEFAULT_WAIT_SECONDS = 10;
const POLL_MS = 200;

export interface PurgeOptions {
  readonly pinRoot: string;
  readonly force: boolean;
  readonly waitSeconds: number;
  /** One line of progress for a person. */
  readonly say: (line: string) => void;
}

export interface PurgeResult {
  /** False when there was nothing pinned. */
  readonly purged: boolean;
  /** Accelerated sockets left to orphaned maps by --force. */
  readonly orphanedSockets: number;
}

/** Sockets in the sockhashes right now: each is one end of a live accelerated connection. */
function acceleratedSockets(pinRoot: string): number {
  const { sockets } = readStatus(pinRoot);
  return sockets.clients + sockets.servers;
}

/** Polls until no socket is left or the time is up; returns what is left. */
async function waitForSockets(pinRoot: string, waitSeconds: number, say: (line: string) => void): Promise<number> {
  let left = acceleratedSockets(pinRoot);
  if (left === 0) return 0;
  say(`waiting up to ${waitSeconds} s for ${left} accelerated sockets to close`);
  const deadline = Date.now() + waitSeconds * 1000;
  while (left > 0 && Date.now() < deadline) {
    await sleep(Math.min(POLL_MS, Math.max(0, deadline - Date.now())));
    left = acceleratedSockets(pinRoot);
  }
  return left;
}

/** A PrivilegeError (exit 77) when this process may not take the lock or touch the pins. */
export async function purge(opts: PurgeOptions): Promise<PurgeResult> {
  const lock = acquireInstanceLock(opts.pinRoot, 'purge');
  try {
    return await purgeLocked(opts);
  } catch (err) {
    throw explainPinError(opts.pinRoot, err);
  } finally {
    lock.release();
  }
}

async function purgeLocked(opts: PurgeOptions): Promise<PurgeResult> {
  const { pinRoot, say } = opts;
  if (!pinPresent(pinRoot, pinRoot)) {
    say(`nothing pinned under ${pinRoot}`);
    return { purged: false, orphanedSockets: 0 };
  }
  const hasMaps = pinPresent(pinRoot, mapPinPath(pinRoot, 'sa_stats'));
  if (hasMaps && readStatus(pinRoot).sockopsMode === 'accepting') {
    say('the sock_ops program is still accepting (the daemon did not stop cleanly): detaching it now');
    detachSockops(pinRoot);
  }
  const left = hasMaps ? await waitForSockets(pinRoot, opts.waitSeconds, say) : 0;
  if (left > 0 && !opts.force) {
    throw new PinConflictError(`${left} accelerated sockets still use the maps under ${pinRoot}; nothing was removed`, {
      hint:
        'wait for those connections to close, retry with a longer --wait-seconds, or use --force: their bytes are not lost ' +
        '(they stay redirected by maps that outlive the pins until their last socket closes), but they become invisible ' +
        'to status and keep the old programs, and a handshake in flight right then may keep the FIONREAD hazard',
    });
  }
  if (left > 0) {
    holdOrphanedMaps(pinRoot, say);
    say(`--force: ${left} accelerated sockets keep orphaned maps until they close`);
  }
  removePins(pinRoot, say);
  return { purged: true, orphanedSockets: left };
}

/** Before the pins go: each socket left must keep both sockhashes alive (see src/kernel/sockhash-hold.ts). */
function holdOrphanedMaps(pinRoot: string, say: (line: string) => void): void {
  const bound = withPinnedFd(mapPinPath(pinRoot, 'sa_clients'), (clients) =>
    withPinnedFd(mapPinPath(pinRoot, 'sa_servers'), (servers) => bindSockhashesToEveryProgram({ clients, servers })),
  );
  if (bound > 0) say(`bound both sockhashes to ${bound} sk_msg programs of an older build, whose sockets now keep them`);
}

function removePins(pinRoot: string, say: (line: string) => void): void {
  if (detachSockops(pinRoot)) say('detached the sock_ops program from its cgroup');
  // Links before maps: the sk_msg links reference the sockhashes.
  const pins = [
    ...Object.keys(LINK_PINS).map((link) => linkPinPath(pinRoot, link as keyof typeof LINK_PINS)),
    ...SHARED_MAP_NAMES.map((name) => mapPinPath(pinRoot, name)),
  ];
  const removed = pins.filter((pin) => {
    if (!pinExists(pin)) return false;
    fs.unlinkSync(pin);
    return true;
  });
  say(`removed ${removed.length} pins`);
  const others = fs.readdirSync(pinRoot);
  if (others.length > 0) {
    say(`kept ${pinRoot}: it also holds ${others.join(', ')}, which sockaccel did not make`);
    return;
  }
  fs.rmdirSync(pinRoot);
  say(`removed ${pinRoot}`);
}

function parseWaitSeconds(value: string | boolean | undefined): number {
  if (value === undefined) return DEFAULT_WAIT_SECONDS;
  if (typeof value !== 'string' || !/^\d+$/.test(value) || Number(value) > 86_400) {
    throw new UsageError(`--wait-seconds must be an integer 0..86400, got ${JSON.stringify(value)}`);
  }
  return Number(value);
}

/** The CLI handler. */
export async function runPurge(cmd: ParsedCommandLine): Promise<number> {
  const config = loadConfig({ argv: cmd.configArgv });
  await removeDeadRuns((line) => process.stdout.write(`${line}\n`));
  await purge({
    pinRoot: config.pinRoot,
    force: cmd.commandFlags.force === true,
    waitSeconds: parseWaitSeconds(cmd.commandFlags['wait-seconds']),
    say: (line) => process.stdout.write(`${line}\n`),
  });
  return 0;
}
