import { execFile } from 'node:child_process';
import path from 'node:path';
import { scaled } from './wait-for';

/** The built CLI entry point (dist/src/cli/main.js). */
export const CLI = path.resolve(__dirname, '..', '..', 'src', 'cli', 'main.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliOptions {
  /** Extra environment, on top of this process's. */
  env?: NodeJS.ProcessEnv;
  /** argv prefix, e.g. setpriv/capsh to run as another user or with fewer capabilities. */
  prefix?: readonly string[];
  timeoutMs?: number;
}

/**
 * Runs `sockaccel <args>` to completion, bounded by a timeout; never rejects
 * on a non-zero exit (the code is part of the result; -1 for a signal or timeout).
 */
export function runCli(args: readonly string[], opts: CliOptions = {}): Promise<CliResult> {
  const [cmd, ...rest] = [...(opts.prefix ?? []), process.execPath, CLI, ...args];
  return new Promise((resolve) => {
    execFile(cmd, rest, { timeout: scaled(opts.timeoutMs ?? 60_000), env: { ...process.env, ...opts.env }, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === 'number' ? err.code : -1, stdout, stderr });
    });
  });
}
