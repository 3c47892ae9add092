/** Kernel release strings as numbers, for comparing with a feature's first kernel. */
export type KernelVersion = readonly [number, number, number];

/** "6.18.44-fc-v669" → [6, 18, 44]; "5.15" → [5, 15, 0]. */
export function parseKernelVersion(release: string): KernelVersion | null {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(release);
  return m ? [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)] : null;
}

export function atLeast(have: KernelVersion, min: string): boolean {
  const want = parseKernelVersion(min);
  if (!want) throw new Error(`bad kernel version ${min}`);
  for (let i = 0; i < 3; i++) if (have[i] !== want[i]) return have[i] > want[i];
  return true;
}
