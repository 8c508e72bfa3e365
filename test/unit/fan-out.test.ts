// The share of the sorted databases each task takes.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { taskShare } from '../../src/fan-out.ts';

describe('taskShare', () => {
  test('every database is taken by exactly one task, whatever the number of tasks', () => {
    const names = Array.from({ length: 11 }, (_, i) => `db${String(i).padStart(2, '0')}`);
    for (const count of [1, 2, 3, 5, 11, 16]) {
      const shares = Array.from({ length: count }, (_, index) => taskShare(names, { index, count }));
      assert.deepEqual(shares.flat().sort(), names, `${count} tasks`);
      assert.ok(shares.every((share) => share.length === Math.floor(names.length / count) || share.length === Math.ceil(names.length / count)), `${count} tasks share evenly`);
    }
  });

  test('task i takes positions i, i+n, i+2n…', () => {
    assert.deepEqual(taskShare(['a', 'b', 'c', 'd', 'e', 'f', 'g'], { index: 1, count: 3 }), ['b', 'e']);
    assert.deepEqual(taskShare(['a', 'b'], { index: 4, count: 5 }), [], 'more tasks than databases leaves some with nothing');
  });
});
