import { execFileSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import type { ImplementationFn, TestFn } from 'ava';
import { findCgroup2Root } from './cgroup';

/** Why this process cannot create cgroups and namespaces, or undefined if it can. */
export function missingPrivilege(): string | undefined {
  if (process.getuid?.() !== 0) return 'not running as root';
  let cgroupRoot: string;
  try {
    cgroupRoot = findCgroup2Root();
  } catch (err) {
    return (err as Error).message;
  }
  try {
    accessSync(cgroupRoot, constants.W_OK);
  } catch {
    return `cgroup2 root ${cgroupRoot} is not writable`;
  }
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
  } catch {
    return '`ip netns` (iproute2) is not usable';
  }
  return undefined;
}

export type PrivilegedTest = (title: string, implementation: ImplementationFn<[]>) => void;

/**
 * `test` when cgroups and namespaces can be created. Otherwise its tests are
 * skipped on a developer machine, but under CI=true they run (and fail), and one
 * extra test fails up front naming the missing privilege: CI must never go green
 * by skipping.
 */
export function privilegedTest(test: TestFn): PrivilegedTest {
  const problem = missingPrivilege();
  if (problem === undefined) return test;
  if (process.env.CI === 'true') {
    test('integration tests have the privileges they need', (t) => {
      t.fail(`missing privilege under CI: ${problem}`);
    });
    return test;
  }
  return test.skip;
}

/** setpriv as root with exactly `caps` (bounding, inheritable, ambient), like a root service with CapabilityBoundingSet. */
export function onlyCaps(caps: readonly string[]): string[] {
  const list = ['-all', ...caps.map((c) => `+${c.replace(/^CAP_/, '').toLowerCase()}`)].join(',');
  return ['setpriv', `--bounding-set=${list}`, `--inh-caps=${list}`, `--ambient-caps=${list}`, '--no-new-privs', '--'];
}
