import test from 'ava';
import { PrivilegeError } from '../../src/common/errors';
import { guarded, summarize, pass } from '../../src/doctor/check';
import { LibbpfError } from '../../src/kernel/libc';
import { explainPinError, isPermissionError, pinPresent } from '../../src/kernel/pin-access';

const fsError = (code: string) => Object.assign(new Error(`${code}: x`), { code, path: '/p/stats' });

test('EACCES and EPERM, from a file or from bpf(), are permission failures; a missing object is not', (t) => {
  t.true(isPermissionError(fsError('EACCES')));
  t.true(isPermissionError(fsError('EPERM')));
  t.true(isPermissionError(new LibbpfError('bpf_obj_get', 13)));
  t.true(isPermissionError(new LibbpfError('bpf_prog_get_fd_by_id', 1)));
  t.false(isPermissionError(fsError('ENOENT')));
  t.false(isPermissionError(new LibbpfError('bpf_obj_get', 2)));
  t.false(isPermissionError(new Error('other')));
});

test('a permission failure becomes a PrivilegeError (exit 77) naming the pin root and what was refused; others pass through', (t) => {
  const err = explainPinError('/p', fsError('EACCES'));
  t.true(err instanceof PrivilegeError);
  t.is((err as PrivilegeError).exitCode, 77);
  t.regex((err as PrivilegeError).message, /^not permitted to read sockaccel's pins under \/p \(EACCES on \/p\/stats\), so whether the daemon is running cannot be told/);
  const bpfErr = explainPinError('/p', new LibbpfError('bpf_prog_get_fd_by_id', 1, 'id 7')) as PrivilegeError;
  t.regex(bpfErr.message, /\(bpf_prog_get_fd_by_id\(id 7\): EPERM .*\)$/);
  const other = fsError('EIO');
  t.is(explainPinError('/p', other), other);
});

test('a pin that is really absent is absent', (t) => {
  t.false(pinPresent('/nonexistent-sockaccel', '/nonexistent-sockaccel/stats'));
  t.true(pinPresent('/', '/'));
});

test('doctor: a check refused for lack of privilege marks the report incomplete; other failures do not', (t) => {
  const refused = guarded('x.refused', 'refused', 'fix', () => {
    throw new LibbpfError('bpf_prog_query', 1);
  });
  const broken = guarded('x.broken', 'broken', 'fix', () => {
    throw new Error('boom');
  });
  t.like(refused[0], { status: 'fail', missingPrivilege: true });
  t.is(broken[0].missingPrivilege, undefined);
  t.like(summarize([pass('a', 'a', 'ok'), ...broken]), { ok: false, complete: true });
  t.like(summarize([pass('a', 'a', 'ok'), ...refused]), { ok: false, complete: false });
});
