import test from 'ava';
import { fileStamp } from '../../harness/util/stamp.js';

test('fileStamp: UTC to the second, one path component that sorts by time', (t) => {
  t.is(fileStamp(new Date('2026-11-30T11:05:06.789Z')), '20261130-110506Z');
  const earlier = fileStamp(new Date('2026-01-02T03:04:05Z'));
  t.is(earlier, '20260102-030405Z');
  t.true(earlier < fileStamp(new Date('2026-01-02T03:04:06Z')));
});
