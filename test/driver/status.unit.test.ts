// What the caller sees when a handler fails (fast tier).
import { expect } from 'chai';
import { toStatus } from '../../driver/status.js';
import { CommandError } from '../../host/run.js';
import { Code, CsiError, invalid } from '../../volume/errors.js';

const errno = (code: string) => Object.assign(new Error(`${code}: it failed`), { code });

describe('error mapping', () => {
  const rows: Array<[string, unknown, Code]> = [
    ['a CsiError keeps its code', invalid('bad'), Code.INVALID_ARGUMENT],
    ['a failed command is INTERNAL', new CommandError('mount', ['--', 'a', 'b'], 32, 'mount: failed', '', false), Code.INTERNAL],
    [
      'a command that ran out of space is RESOURCE_EXHAUSTED',
      new CommandError('cp', ['--', 'a', 'b'], 1, "cp: error writing 'b': No space left on device", '', false),
      Code.RESOURCE_EXHAUSTED,
    ],
    ['a command that timed out is DEADLINE_EXCEEDED', new CommandError('mount', [], undefined, '', '', true), Code.DEADLINE_EXCEEDED],
    ['ENOSPC is RESOURCE_EXHAUSTED', errno('ENOSPC'), Code.RESOURCE_EXHAUSTED],
    ['EDQUOT is RESOURCE_EXHAUSTED', errno('EDQUOT'), Code.RESOURCE_EXHAUSTED],
    ['EROFS is FAILED_PRECONDITION', errno('EROFS'), Code.FAILED_PRECONDITION],
    ['EBUSY is FAILED_PRECONDITION', errno('EBUSY'), Code.FAILED_PRECONDITION],
    ['EACCES is PERMISSION_DENIED', errno('EACCES'), Code.PERMISSION_DENIED],
    ['ECONNREFUSED is UNAVAILABLE', errno('ECONNREFUSED'), Code.UNAVAILABLE],
    ['ETIMEDOUT is DEADLINE_EXCEEDED', errno('ETIMEDOUT'), Code.DEADLINE_EXCEEDED],
    ['another errno is INTERNAL', errno('EIO'), Code.INTERNAL],
    ['a plain Error is INTERNAL', new Error('boom'), Code.INTERNAL],
    ['a thrown string is INTERNAL', 'boom', Code.INTERNAL],
  ];
  for (const [label, err, code] of rows) {
    it(label, () => expect(Code[toStatus(err).code]).to.equal(Code[code]));
  }

  it('keeps a readable message and never a stack trace', () => {
    const { message } = toStatus(new CommandError('mkfs.ext4', ['/dev/loop9'], 1, 'mkfs.ext4: no such device', '', false));
    expect(message).to.equal('mkfs.ext4 /dev/loop9: exited with 1: mkfs.ext4: no such device');
    expect(toStatus(new Error('x')).message).to.not.match(/\n\s+at /);
  });

  it('uses the gRPC wire numbers', () => {
    expect([
      Code.INVALID_ARGUMENT,
      Code.NOT_FOUND,
      Code.ALREADY_EXISTS,
      Code.FAILED_PRECONDITION,
      Code.ABORTED,
      Code.UNAVAILABLE,
    ]).to.deep.equal([3, 5, 6, 9, 10, 14]);
    expect(new CsiError(Code.OUT_OF_RANGE, 'x').code).to.equal(11);
  });
});
