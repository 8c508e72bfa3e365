// The hold stage, the central invariant (a backup ends only if the dump tool exited 0), driven by a
// promise the test controls (no timers, no races) and once by a real child's exit.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
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

// A source of `chunks` into the stage into a sink that records what arrived and whether its end did;
// `step(i)` runs before chunk i is produced (and with i = chunks.length after the last one).
async function run(chunks: string[], exited: Promise<void>, step: (index: number) => void = () => {}) {
  const seen = { bytes: '', finished: false };
  const source = Readable.from(
    (function* () {
      for (const [index, chunk] of chunks.entries()) {
        step(index);
        yield chunk;
      }
      step(chunks.length);
    })(),
  );
  const sink = new Writable({
    write: (chunk: Buffer, _encoding, callback) => ((seen.bytes += chunk.toString()), callback()),
    final: (callback) => ((seen.finished = true), callback()),
  });
  const result = await pipeline(source, holdUntilExit(exited), sink).then(
    () => undefined,
    (error: unknown) => error as Error,
  );
  return { ...seen, error: result };
}

test('a failing exit never lets the end through, whenever it comes: before, during or after the data', async () => {
  const chunks = ['a', 'b', 'c', 'd'];
  for (let at = 0; at <= chunks.length; at += 1) {
    const { promise, reject } = Promise.withResolvers<void>();
    const outcome = await run(chunks, promise, (index) => {
      if (index === at) reject(new Error(`exit code 2 at ${at}`));
    });
    assert.equal(outcome.finished, false, `rejected at ${at}: the sink never ended`);
    assert.equal(outcome.error?.message, `exit code 2 at ${at}`, 'the pipeline fails with the exit');
  }
});

test('an exit 0 lets the end through, whether it comes before or after the data', async () => {
  assert.deepEqual(await run(['x', 'y'], Promise.resolve()), { bytes: 'xy', finished: true, error: undefined });
  const { promise, resolve } = Promise.withResolvers<void>();
  const late = run(['x', 'y'], promise);
  for (let i = 0; i < 20; i++) await drain();
  resolve();
  assert.deepEqual(await late, { bytes: 'xy', finished: true, error: undefined });
});

test('the real exit code of a child process decides: 3 errors the stream, 0 ends it', async () => {
  const exitOf = (code: number) => {
    const child = spawn(process.execPath, ['-e', `process.exit(${code})`], { stdio: 'ignore' });
    return new Promise<void>((resolve, reject) => child.once('exit', (status) => (status === 0 ? resolve() : reject(new Error(`exit code ${status}`)))));
  };
  const failed = await run(['dump'], exitOf(3));
  assert.equal(failed.finished, false);
  assert.equal(failed.error?.message, 'exit code 3');
  assert.deepEqual(await run(['dump'], exitOf(0)), { bytes: 'dump', finished: true, error: undefined });
});

test('the held tail is bounded: nothing but the end waits, and a sink that stops reading pushes back', () => {
  const { promise, resolve } = Promise.withResolvers<void>();
  const stage = holdUntilExit(promise);
  const chunk = Buffer.alloc(64 * 1024);
  let accepted = 0;
  // Nobody reads: the stage takes bytes only up to its buffers, then asks the writer to wait.
  while (stage.write(chunk)) {
    accepted += chunk.length;
    assert.ok(accepted < 10 * 1024 * 1024, 'write() never pushed back');
  }
  const held = stage.writableLength + stage.readableLength;
  assert.ok(held <= stage.writableHighWaterMark + stage.readableHighWaterMark + 2 * chunk.length, `${held} bytes held`);
  resolve();
  stage.destroy();
});
