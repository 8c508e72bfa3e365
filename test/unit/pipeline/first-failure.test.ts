import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DumpError, StorageError, StoppedError } from '../../../src/errors.ts';
import { firstFailure } from '../../../src/pipeline/first-failure.ts';

test('the first failure recorded is the cause; later ones are its consequences', () => {
  const failures = firstFailure();
  const store = new StorageError('the bucket went away', 'unavailable');
  failures.record(store);
  failures.record(new DumpError('pg_dump died of a broken pipe', { kind: 'failed' }));
  assert.equal(failures.first, store);
});

test('a stage the run stopped itself is never the cause, even when it settles first', async () => {
  const failures = firstFailure();
  let failAge: (error: Error) => void = () => undefined;
  const age = new Promise<void>((_, reject) => {
    failAge = reject;
  });
  failures.watch(Promise.reject(new StoppedError('compress', 'zstd')));
  failures.watch(age);
  failures.watch(undefined);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(failures.first, undefined, 'only stopped stages so far');
  const cause = new Error('age: error: no identity matched');
  failAge(cause);
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(failures.first, cause);
});

test('nothing failed on its own: no cause, the caller keeps its own error', () => {
  const failures = firstFailure();
  failures.record(new StoppedError('dump', 'pg_dump'));
  assert.equal(failures.first, undefined);
});

test('a tool killed by a broken pipe lost its reader: the reader failing later is still the cause', () => {
  const failures = firstFailure();
  const sigpipe = new DumpError('pg_dump was killed by SIGPIPE', { kind: 'failed', signal: 'SIGPIPE' });
  failures.record(sigpipe);
  failures.record(new DumpError('mongodump exited with code 141', { kind: 'failed', exitCode: 141 }));
  assert.equal(failures.first, sigpipe, 'alone, a broken pipe is all there is to report');
  const store = new StorageError('the store closed every connection', 'unavailable');
  failures.record(store);
  assert.equal(failures.first, store);
});
