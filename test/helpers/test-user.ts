/**
 * A throwaway unprivileged user for abuse tests: created with useradd,
 * removed with userdel afterwards, whatever happens. Its processes are
 * started by us (so killed by pid before the user goes).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { runThenCleanUp } from './cleanup';
import { RUN_TAG, uniqueName } from './names';

export const TEST_USER_PREFIX = 'sa-';

export interface TestUser {
  readonly name: string;
  readonly uid: number;
  readonly gid: number;
  /** argv prefix that runs a command as this user, with no capabilities and no supplementary groups. */
  readonly asUser: readonly string[];
}

/** Test users on the machine (`sa-*` in /etc/passwd), whoever created them. */
export function listTestUsers(): string[] {
  return readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .map((line) => line.split(':')[0])
    .filter((name) => name.startsWith(TEST_USER_PREFIX));
}

function removeUser(name: string): void {
  if (!listTestUsers().includes(name)) return;
  execFileSync('userdel', [name], { stdio: 'pipe' });
  // --user-group made a group of the same name; userdel removes it where
  // USERGROUPS_ENAB is on, else this does.
  try {
    execFileSync('groupdel', [name], { stdio: 'pipe' });
  } catch {
    // already gone
  }
}

export async function withTestUser<T>(fn: (user: TestUser) => Promise<T>): Promise<T> {
  // useradd limits names to 32 characters: sa-<tag>-<random> is 16.
  const name = uniqueName(TEST_USER_PREFIX);
  if (!name.includes(RUN_TAG)) throw new Error('unexpected user name');
  execFileSync('useradd', ['--no-create-home', '--shell', '/usr/sbin/nologin', '--user-group', name], { stdio: 'pipe' });
  return runThenCleanUp(
    () => {
      const uid = Number(execFileSync('id', ['-u', name], { encoding: 'utf8' }).trim());
      const gid = Number(execFileSync('id', ['-g', name], { encoding: 'utf8' }).trim());
      const asUser = ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--inh-caps=-all', '--'];
      return fn({ name, uid, gid, asUser });
    },
    async () => removeUser(name),
  );
}
