/**
 * Freezing pinned maps (BPF_MAP_FREEZE): syscall writes then fail with EPERM
 * through every fd, while the programs keep writing. The daemon freezes the
 * program-only maps; doctor checks that they are.
 */
import * as bpf from './libbpf';
import { LibbpfError } from './libbpf';
import { withPinnedFd } from './pins';

/** BPF_F_LOCK: the kernel rejects it (EINVAL) on maps without a spin lock, but only after its EPERM check for frozen maps. */
const BPF_F_LOCK = 4;
const EPERM = 1;
const EBUSY = 16;
const EINVAL = 22;

/** Whether syscall writes to the map behind `pin` are refused; never changes the map. */
export function isFrozen(pin: string): boolean {
  return withPinnedFd(pin, (fd) => {
    const { keySize, valueSize } = bpf.mapInfo(fd);
    // Per-CPU values take one slot per possible CPU; oversizing is harmless.
    const value = Buffer.alloc(bpf.perCpuValueBufferSize(valueSize));
    try {
      bpf.bpfMapUpdateElem(fd, Buffer.alloc(keySize), value, BPF_F_LOCK);
    } catch (err) {
      if (err instanceof LibbpfError && err.errno === EPERM) return true;
      if (err instanceof LibbpfError && err.errno === EINVAL) return false;
      throw err;
    }
    throw new Error(`${pin}: an update with BPF_F_LOCK succeeded; cannot tell`);
  }, false);
}

/**
 * Freezes the map behind `pin` through a writable fd; a map that is frozen
 * already (a restart on existing pins) is fine. Freezing it again fails with
 * EPERM on newer kernels (the fd lost its write permission) and with EBUSY on
 * older ones such as 6.1, where EBUSY can also mean a syscall write in
 * flight: then only the map's refusal of a write proves it frozen.
 */
export function freezePinnedMap(pin: string): void {
  try {
    withPinnedFd(pin, (fd) => bpf.bpfMapFreeze(fd), false);
  } catch (err) {
    const again = err instanceof LibbpfError && (err.errno === EPERM || err.errno === EBUSY);
    if (!again || !isFrozen(pin)) throw err;
  }
}
