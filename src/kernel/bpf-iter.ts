/** Reading a BPF iterator: one pass over its output. */
import fs from 'node:fs';
import * as bpf from './libbpf';
import { close } from './libc';

const READ_CHUNK = 64 * 1024;

/** Runs the iterator behind `link` once and returns everything it wrote. */
export function readIterator(link: bpf.BpfLinkPtr): Buffer {
  const fd = bpf.bpfIterCreate(bpf.bpfLinkFd(link));
  try {
    const chunks: Buffer[] = [];
    const buf = Buffer.alloc(READ_CHUNK);
    for (let n; (n = fs.readSync(fd, buf, 0, buf.length, null)) > 0; ) chunks.push(Buffer.from(buf.subarray(0, n)));
    return Buffer.concat(chunks);
  } finally {
    close(fd);
  }
}
