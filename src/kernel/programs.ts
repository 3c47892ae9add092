/** Walking the programs loaded in the kernel (needs CAP_SYS_ADMIN). */
import * as bpf from './libbpf';
import { LibbpfError } from './libbpf';
import { close } from './libc';

const ENOENT = 2;

/**
 * Calls `fn` with an fd of every loaded program of `type`, closed afterwards.
 * A program freed between its id and its fd is skipped.
 */
export function forEachLoadedProgram(type: number, fn: (id: number, fd: number, info: bpf.ProgInfo) => void): void {
  for (let id = bpf.bpfProgGetNextId(0); id !== null; id = bpf.bpfProgGetNextId(id)) {
    let fd: number;
    try {
      fd = bpf.bpfProgGetFdById(id);
    } catch (err) {
      if (err instanceof LibbpfError && err.errno === ENOENT) continue;
      throw err;
    }
    try {
      const info = bpf.progInfo(fd);
      if (info.type === type) fn(id, fd, info);
    } finally {
      close(fd);
    }
  }
}
