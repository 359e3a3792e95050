// The driver's --help (fast tier).
import { expect } from 'chai';
import { usage } from '../../driver/flags.js';

describe('driver usage', () => {
  it('lines every description up in one column, after the longest flag name', () => {
    const flagLines = usage()
      .split('\n')
      .filter((l) => l.startsWith('  --'));
    expect(flagLines.length).to.be.greaterThan(10);
    const column = (l: string) => l.search(/\S+(?: <value>)?\s{2,}\S/) >= 0 && l.replace(/^(\s+--\S+(?: <value>)?\s+).*/, '$1').length;
    const columns = new Set(flagLines.map(column));
    expect([...columns]).to.have.length(1);
    for (const l of flagLines) expect(l, l).to.match(/^ {2}--\S+(?: <value>)? {2,}\S/);
  });
});
