/**
 * The README's kernel table, as data: each row a range of kernel versions,
 * the kernels tested in it and what they showed. doctor says which row the
 * running kernel falls in. A row reports what was measured on its tested
 * kernels; for any other kernel in the range, the live checks (feature
 * probes, the verifier load, the FIONREAD probes) are what count.
 */
import { atLeast, type KernelVersion } from '../kernel/version';
import { Check, fail, pass, warn } from './check';

export interface KernelRow {
  /** First version of the range; the range ends where the next row starts. */
  readonly from: string;
  /** The range as the README shows it. */
  readonly label: string;
  /** Kernels tested in this range (uname -r). */
  readonly tested: readonly string[];
  readonly result: string;
  /** ok: sockaccel runs; hazard: runs only with an opt-in; refused: `run` exits at the probe stage. */
  readonly status: 'ok' | 'hazard' | 'refused';
}

/** Oldest first. Keep in step with the README's kernel table (docs/fionread.md). */
export const KERNEL_TABLE: readonly KernelRow[] = [
  {
    from: '0.0',
    label: 'before 5.15',
    tested: ['5.10.0-46-amd64 (Debian 11)'],
    result:
      '`run` refuses at the probe stage, exit 69, nothing attached: no bpf_get_netns_cookie in sock_ops or sk_msg (5.15); ' +
      'the programs also need atomic compare-and-swap (5.12)',
    status: 'refused',
  },
  {
    from: '5.15',
    label: '5.15 to 6.11',
    tested: ['6.1.0-57-amd64 (Debian 12)'],
    result:
      'programs load and redirect (12 of 13 data-path tests pass), but FIONREAD counts no redirected bytes on either end: ' +
      '`run` refuses (exit 71) unless fionreadHazard is "accept"',
    status: 'hazard',
  },
  {
    from: '6.12',
    label: '6.12 to 6.17',
    tested: ['6.12.117+deb12-amd64 (Debian 12 backports)'],
    result: 'works: all 13 data-path tests pass, FIONREAD counts redirected bytes; sk_msg attached through sockmap bpf_links',
    status: 'ok',
  },
  {
    from: '6.18',
    label: '6.18 and later',
    tested: ['6.18.44 (x86_64)'],
    result: 'works: the whole suite passes; FIONREAD on a one-sided socket reads 0, which pairing avoids',
    status: 'ok',
  },
];

export function kernelRow(kernel: KernelVersion): KernelRow {
  return [...KERNEL_TABLE].reverse().find((row) => atLeast(kernel, row.from)) ?? KERNEL_TABLE[0];
}

export function kernelRowCheck(kernel: KernelVersion | null, release: string): Check {
  const id = 'kernel.table_row';
  const title = "row of the README's kernel table";
  if (!kernel) return fail(id, title, `cannot parse "${release}"`, 'see the kernel table in the README');
  const row = kernelRow(kernel);
  // "6.18.44 (x86_64)" covers its local builds too: 6.18.44-fc-v669 and the like.
  const isTested = (t: string) => {
    const name = t.split(' ')[0];
    return release === name || release.startsWith(`${name}-`);
  };
  const tested = row.tested.some(isTested)
    ? `this exact kernel was tested: ${row.result}`
    : `tested there: ${row.tested.join(', ')}: ${row.result}. This kernel was not tested itself: the live checks here decide`;
  const detail = `${release} is in the row "${row.label}"; ${tested}`;
  if (row.status === 'ok') return pass(id, title, detail);
  if (row.status === 'hazard') return warn(id, title, detail, 'see the FIONREAD check; Linux 6.12 or later counts redirected bytes');
  return fail(id, title, detail, 'upgrade to Linux 5.15 or later (6.12 or later for FIONREAD that counts redirected bytes)');
}
