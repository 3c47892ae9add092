/**
 * Telling "nothing is pinned" from "not allowed to look". The pin directory
 * is root-only (0700, see the README's security model), so for anyone else
 * stat() of a pin fails with EACCES, and fs.existsSync() turns that into
 * false: a running daemon would look stopped. The commands that read pins
 * ask here instead, and turn a permission failure met while reading (a file
 * or a bpf() call answering EACCES or EPERM) into a PrivilegeError, exit 77.
 */
import fs from 'node:fs';
import { EnvironmentError, PrivilegeError } from '../common/errors';
import { LibbpfError } from './libc';

const EPERM = 1;
const EACCES = 13;

/** A file or bpf() call refused for lack of permission (not: the object is missing). */
export function isPermissionError(err: unknown): boolean {
  if (err instanceof LibbpfError) return err.errno === EPERM || err.errno === EACCES;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === 'EACCES' || code === 'EPERM';
}

function describe(err: unknown): string {
  if (err instanceof LibbpfError) return err.message;
  const e = err as NodeJS.ErrnoException;
  return e.code !== undefined && e.path !== undefined ? `${e.code} on ${e.path}` : String(e.message ?? err);
}

/** The PrivilegeError for `err`, a permission failure while reading the pins under `pinRoot`. */
export function pinPrivilegeError(pinRoot: string, err: unknown): PrivilegeError {
  const root = process.getuid?.() === 0;
  // A refused file means the root-only directory: nothing about the daemon can be seen.
  const blind = err instanceof LibbpfError ? '' : ', so whether the daemon is running cannot be told from here';
  return new PrivilegeError(
    `not permitted to read sockaccel's pins under ${pinRoot} (${describe(err)})${blind}`,
    {
      cause: err,
      hint: root
        ? 'this root process lacks a capability it needs (a restricted capability set: setpriv, a container, a unit\'s CapabilityBoundingSet); run it as root with all capabilities'
        : 'run it as root (sudo): the pins are root-only by design, see the README\'s security model',
    },
  );
}

/** `err` as a PrivilegeError when it is a permission failure, else `err` itself: for `catch (err) { throw explainPinError(…) }`. */
export function explainPinError(pinRoot: string, err: unknown): unknown {
  return isPermissionError(err) ? pinPrivilegeError(pinRoot, err) : err;
}

/**
 * Whether `pin` exists: false only when it is really absent (ENOENT);
 * a PrivilegeError when this process may not look.
 */
export function pinPresent(pinRoot: string, pin: string): boolean {
  try {
    fs.statSync(pin);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw explainPinError(pinRoot, err);
  }
}

/** Throws unless `pin` exists: EnvironmentError when nothing is pinned, PrivilegeError when this process may not look. */
export function requirePin(pinRoot: string, pin: string): void {
  if (!pinPresent(pinRoot, pin)) {
    throw new EnvironmentError(`nothing pinned under ${pinRoot}`, {
      hint: 'start the daemon (sockaccel run), or pass the --pin-root it uses',
    });
  }
}
