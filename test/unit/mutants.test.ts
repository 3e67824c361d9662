import path from 'node:path';
import test from 'ava';
import { projectRoot } from '../../harness/util/paths.js';
import { applyMutant, mutantListProblems, readMutantList } from '../../scripts/mutant-list.js';

test('the shipped kmem.c mutant list is well formed', async (t) => {
  const list = await readMutantList(path.join(projectRoot, 'test/mutants/kmem-7.3.json'));
  t.is(list.file, 'drivers/dax/kmem.c');
  t.true(list.mutants.length >= 20);
});

test('a mutant list with a repeated id, no bug or no change is refused, each problem named', (t) => {
  const m = { id: 'a', bug: 'b', find: 'x', replace: 'y' };
  t.deepEqual(mutantListProblems({ file: 'f', mutants: [m, { ...m }] }), ['mutant id "a" appears twice']);
  t.deepEqual(mutantListProblems({ file: 'f', mutants: [{ ...m, bug: '', replace: 'x' }] }), [
    'mutant a does not say what bug it stands for',
    'mutant a changes nothing',
  ]);
  t.deepEqual(mutantListProblems({ file: 'f' } as never), ['needs "file" and a "mutants" array']);
});

test('a mutant applies only where its text occurs exactly once, and replaces it literally', (t) => {
  const m = { id: 'm', bug: 'b', find: 'return 0;', replace: 'return $&1;' };
  t.is(applyMutant('a();\nreturn 0;\n', m), 'a();\nreturn $&1;\n');
  t.throws(() => applyMutant('nothing here', m), { message: 'mutant m: its text occurs 0 times in the file (must be once)' });
  t.throws(() => applyMutant('return 0;return 0;', m), { message: /occurs 2 times/ });
});
