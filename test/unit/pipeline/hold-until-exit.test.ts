// The hold stage, driven by a promise the test controls: no timers, no races.
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { holdUntilExit } from '../../../src/pipeline/hold-until-exit.ts';

// Lets every pending callback and stream event run.
const drain = () => new Promise<void>((resolve) => setImmediate(resolve));

// Reads the stage into an array and records whether its end (or an error) arrived.
function sink(stage: NodeJS.ReadableStream) {
  const seen = { chunks: [] as string[], ended: false, error: undefined as Error | undefined };
  stage.on('data', (chunk: Buffer) => seen.chunks.push(chunk.toString()));
  stage.on('end', () => (seen.ended = true));
  stage.on('error', (error: Error) => (seen.error = error));
  return seen;
}

test('chunks pass at once, but the end of the stream waits until `exited` resolves', async () => {
  const { promise, resolve } = Promise.withResolvers<void>();
  const stage = holdUntilExit(promise);
  const seen = sink(stage);
  stage.write('a');
  stage.end('b');
  for (let i = 0; i < 20; i++) await drain();
  assert.deepEqual(seen.chunks, ['a', 'b']);
  assert.equal(seen.ended, false, 'the end is held while the tool has not exited');
  resolve();
  await drain();
  await drain();
  assert.equal(seen.ended, true);
  assert.equal(seen.error, undefined);
});

test('a rejection after all data arrived errors the stream instead of ending it', async () => {
  const { promise, reject } = Promise.withResolvers<void>();
  const stage = holdUntilExit(promise);
  const seen = sink(stage);
  stage.end('all of it');
  for (let i = 0; i < 20; i++) await drain();
  reject(new Error('dump exited 2'));
  await drain();
  await drain();
  assert.equal(seen.ended, false);
  assert.equal(seen.error?.message, 'dump exited 2');
});

test('a rejection while data is still flowing errors the stream at once', async () => {
  const { promise, reject } = Promise.withResolvers<void>();
  const stage = holdUntilExit(promise);
  const seen = sink(stage);
  stage.write('first');
  await drain();
  reject(new Error('killed'));
  await drain();
  assert.equal(seen.error?.message, 'killed');
  assert.equal(stage.destroyed, true);
});

test('what a storage target sees: no finish before `exited` resolves', async () => {
  const { promise, resolve } = Promise.withResolvers<void>();
  const stage = holdUntilExit(promise);
  let finished = false;
  stage.pipe(new Writable({ write: (_chunk, _encoding, callback) => callback(), final: (callback) => ((finished = true), callback()) }));
  stage.end('x');
  for (let i = 0; i < 20; i++) await drain();
  assert.equal(finished, false);
  resolve();
  for (let i = 0; i < 5; i++) await drain();
  assert.equal(finished, true);
});
