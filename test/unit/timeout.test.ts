// withTimeout: the one way src waits for something for a bounded time.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { TIMED_OUT, withTimeout } from '../../src/timeout.ts';

test('a promise that settles in time gives its value', async () => {
  assert.equal(await withTimeout(Promise.resolve('answer'), 60_000), 'answer');
});

test('a promise that rejects in time rejects the wait with its error', async () => {
  await assert.rejects(withTimeout(Promise.reject(new Error('refused')), 60_000), /refused/);
});

test('a promise that never settles gives TIMED_OUT once the time is up', async () => {
  assert.equal(await withTimeout(new Promise<never>(() => {}), 1), TIMED_OUT);
});

test('a value equal to any string is never taken for the timeout', async () => {
  assert.equal(await withTimeout(Promise.resolve('timeout'), 60_000), 'timeout');
});

test('the timer does not outlive the wait: a finished wait keeps no process alive', async () => {
  const before = process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length;
  await withTimeout(Promise.resolve(1), 60_000);
  assert.equal(process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length, before);
});
