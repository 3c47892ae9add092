/**
 * The result model of `sockaccel doctor`: every check ends in pass, warn or
 * fail, says what it saw, and (unless it passed) what to do about it.
 * A check that cannot run (say, without privilege) fails and names why,
 * rather than passing by default.
 */
import { isPermissionError } from '../kernel/pin-access';

export type CheckStatus = 'pass' | 'warn' | 'fail';

export interface Check {
  /** Stable identifier for scripts, e.g. 'kernel.version'. */
  readonly id: string;
  readonly title: string;
  readonly status: CheckStatus;
  /** What was observed. */
  readonly detail: string;
  /** What to do; present for warn and fail. */
  readonly fix?: string;
  /** Failed because doctor itself lacks a privilege (not because the node is wrong): its answer is unknown. */
  readonly missingPrivilege?: true;
}

export interface DoctorReport {
  readonly checks: readonly Check[];
  readonly summary: Record<CheckStatus, number>;
  /** False when any check failed. */
  readonly ok: boolean;
  /** False when doctor lacked a privilege for some check: run it as root for the whole answer. */
  readonly complete: boolean;
}

export const pass = (id: string, title: string, detail: string): Check => ({ id, title, status: 'pass', detail });
export const warn = (id: string, title: string, detail: string, fix: string): Check => ({ id, title, status: 'warn', detail, fix });
export const fail = (id: string, title: string, detail: string, fix: string): Check => ({ id, title, status: 'fail', detail, fix });
/** A check doctor could not do for lack of privilege. */
export const unprivileged = (id: string, title: string, detail: string, fix: string): Check => ({ ...fail(id, title, detail, fix), missingPrivilege: true });

/** Runs `fn`; an exception becomes a failed check instead of ending the doctor. */
export function guarded(id: string, title: string, fix: string, fn: () => Check | Check[]): Check[] {
  try {
    const result = fn();
    return Array.isArray(result) ? result : [result];
  } catch (err) {
    const detail = `the check itself failed: ${err instanceof Error ? err.message : String(err)}`;
    return [isPermissionError(err) ? unprivileged(id, title, detail, fix) : fail(id, title, detail, fix)];
  }
}

export function summarize(checks: readonly Check[]): DoctorReport {
  const summary: Record<CheckStatus, number> = { pass: 0, warn: 0, fail: 0 };
  for (const c of checks) summary[c.status]++;
  return { checks, summary, ok: summary.fail === 0, complete: !checks.some((c) => c.missingPrivilege === true) };
}

const MARK: Record<CheckStatus, string> = { pass: 'PASS', warn: 'WARN', fail: 'FAIL' };

/** One block per check; the fix is indented under it. */
export function formatReport(report: DoctorReport): string {
  const lines: string[] = [];
  for (const c of report.checks) {
    lines.push(`[${MARK[c.status]}] ${c.title}: ${c.detail}`);
    if (c.fix !== undefined) lines.push(`       fix: ${c.fix}`);
  }
  const { pass: p, warn: w, fail: f } = report.summary;
  lines.push('', `${p} passed, ${w} warning${w === 1 ? '' : 's'}, ${f} failed`);
  return `${lines.join('\n')}\n`;
}
