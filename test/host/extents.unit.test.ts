// The extent arithmetic behind changed-block tracking (host/extents.ts), on
// filefrag output as it prints it and on hand-made extent maps.
import { expect } from 'chai';
import { allocatedRanges, changedRanges, type Extent, merge, parseFilefrag } from '../../host/extents.js';

const FILEFRAG = `Filesystem type is: 58465342
File size of b is 104857600 (104857600 blocks of 1 bytes)
 ext:     logical_offset:        physical_offset: length:   expected: flags:
   0: 10485760..11141119:      98304..    753663: 655360:   10485760: shared
   1: 11141120..11206655:    6389760..   6455295:  65536:     753664:
   2: 11206656..14680063:     819200..   4292607: 3473408:    6455296: shared
   3: 83886080..84934655:    6520832..   7569407: 1048576:   35749888: last,unwritten,eof
b: 4 extents found
`;

const ext = (logical: number, physical: number, length: number, unwritten = false): Extent => ({ logical, physical, length, unwritten });

describe('extents (changed-block tracking arithmetic)', () => {
  it('parses filefrag -v -b1, with and without the expected column, flags included', () => {
    expect(parseFilefrag(FILEFRAG)).to.deep.equal([
      ext(10485760, 98304, 655360),
      ext(11141120, 6389760, 65536),
      ext(11206656, 819200, 3473408),
      ext(83886080, 6520832, 1048576, true),
    ]);
  });

  it('allocated ranges leave unwritten extents out and join touching ones', () => {
    expect(allocatedRanges(parseFilefrag(FILEFRAG))).to.deep.equal([{ offset: 10485760, length: 14680064 - 10485760 }]);
  });

  it('a delta is where the two maps differ: rewritten, newly written, and newly a hole; shared extents are unchanged', () => {
    const base = [ext(0, 1000, 100), ext(200, 5000, 100), ext(400, 9000, 50)];
    const target = [
      ext(0, 1000, 40), // shared
      ext(40, 7000, 20), // rewritten in place: CoW moved it
      ext(60, 1060, 40), // shared again
      ext(200, 5000, 100), // unchanged
      ext(600, 8000, 10), // newly written
      // 400..450 is a hole now: changed (reads as zeros)
    ];
    expect(changedRanges(base, target)).to.deep.equal([
      { offset: 40, length: 20 },
      { offset: 400, length: 50 },
      { offset: 600, length: 10 },
    ]);
    expect(changedRanges(base, base)).to.deep.equal([]);
  });

  it('an unwritten extent counts as a hole on either side', () => {
    expect(changedRanges([ext(0, 100, 10, true)], [])).to.deep.equal([]);
    expect(changedRanges([], [ext(0, 100, 10, true)])).to.deep.equal([]);
    expect(changedRanges([ext(0, 100, 10)], [ext(0, 100, 10, true)])).to.deep.equal([{ offset: 0, length: 10 }]);
  });

  it('merge joins overlapping and touching ranges, in order', () => {
    expect(
      merge([
        { offset: 10, length: 5 },
        { offset: 0, length: 10 },
        { offset: 12, length: 10 },
        { offset: 30, length: 1 },
      ]),
    ).to.deep.equal([
      { offset: 0, length: 22 },
      { offset: 30, length: 1 },
    ]);
  });
});
