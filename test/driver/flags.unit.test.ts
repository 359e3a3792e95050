// The driver's --help (fast tier).
import { expect } from 'chai';
import { usage } from '../../driver/flags.js';

describe('driver usage', () => {
  it('lines every description up in one column, after the longest flag name', () => {
    const flagLines = usage()
      .split('\n')
      .filter((l) => l.startsWith('  --'));
    expect(flagLines.length).to.be.greaterThan(10);
    // Where each description starts: after the name (and <value>) and at least two spaces.
    const starts = flagLines.map((l) => {
      const m = /^( {2}--\S+(?: <value>)? {2,})\S/.exec(l);
      expect(m, l).to.not.equal(null);
      return (m as RegExpExecArray)[1]?.length;
    });
    expect(new Set(starts).size, 'one column').to.equal(1);
  });
});
