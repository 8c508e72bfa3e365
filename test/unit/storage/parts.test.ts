// The shared multipart planner and cutter (src/storage/parts.ts), on small made-up limits.
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';
import { capacityGuard, cutParts, EXTRA_PART_BUFFERS, planParts, SIZE_HINT_MARGIN, type Part, type PartLimits } from '../../../src/storage/parts.ts';

// Chunks of these sizes whose bytes count up (mod 256) across the whole stream.
function bytes(sizes: number[]): Buffer[] {
  let next = 0;
  return sizes.map((size) => Buffer.from(Array.from({ length: size }, () => next++ & 0xff)));
}

function chunks(sizes: number[]): AsyncIterable<Buffer> {
  return Readable.from(bytes(sizes));
}

// Collects every part's bytes, releasing each one at once.
async function cut(sizes: number[], partSize: number): Promise<{ number: number; bytes: Buffer; last: boolean }[]> {
  const parts = [];
  for await (const part of cutParts(chunks(sizes), partSize, 2)) {
    parts.push({ number: part.number, bytes: Buffer.from(part.data), last: part.last });
    part.release();
  }
  return parts;
}

test('a stream is cut into equal parts numbered from 1, and only the shorter end is last', async () => {
  const parts = await cut([3, 7, 1, 4], 4);
  assert.deepEqual(parts.map((p) => [p.number, p.bytes.length, p.last]), [[1, 4, false], [2, 4, false], [3, 4, false], [4, 3, true]]);
  assert.deepEqual(Buffer.concat(parts.map((p) => p.bytes)), Buffer.concat(bytes([3, 7, 1, 4])));
});

test('a body of exactly one part is a single last part, so it can be one PutObject', async () => {
  assert.deepEqual((await cut([2, 2], 4)).map((p) => [p.number, p.bytes.length, p.last]), [[1, 4, true]]);
});

test('an empty body is one empty last part', async () => {
  assert.deepEqual((await cut([], 4)).map((p) => [p.number, p.bytes.length, p.last]), [[1, 0, true]]);
});

test('parts reuse the same buffers, and the next part waits while all of them are held', async () => {
  const parts = cutParts(chunks([4, 4, 4, 4, 1]), 4, 2);
  const first = (await parts.next()).value as Part;
  const second = (await parts.next()).value as Part;
  let arrived = false;
  const waiting = parts.next().then((result) => {
    arrived = true;
    return result.value as Part;
  });
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(arrived, false, 'no third buffer while two parts are held');
  first.release();
  const third = await waiting;
  assert.equal(third.data.buffer, first.data.buffer, 'the released buffer is reused');
  assert.equal(third.data[0], 8);
  second.release();
  third.release();
});

test('capacityGuard passes bytes up to the capacity and fails at the first byte beyond it, not at the end', async () => {
  let produced = 0;
  // A body far longer than the capacity: the guard must stop it long before it ends.
  const body = Readable.from((function* () {
    for (let i = 0; i < 1000; i += 1) {
      produced += 4;
      yield Buffer.alloc(4, i);
    }
  })());
  const passed: Buffer[] = [];
  const guard = capacityGuard(10, () => new Error('too large for the plan'));
  guard.on('data', (chunk: Buffer) => passed.push(chunk));
  await assert.rejects(pipeline(body, guard), /too large for the plan/);
  assert.equal(Buffer.concat(passed).length, 8, 'the two chunks that fit went through');
  assert.ok(produced < 100, `the body was stopped after ${produced} bytes`);
});

test('capacityGuard lets a body of exactly its capacity through', async () => {
  const passed: Buffer[] = [];
  const guard = capacityGuard(12, () => new Error('too large'));
  guard.on('data', (chunk: Buffer) => passed.push(chunk));
  await pipeline(Readable.from(bytes([4, 4, 4])), guard);
  assert.equal(Buffer.concat(passed).length, 12);
});

const MiB = 1024 * 1024;
// A store of 100 parts of 2–50 MiB and objects up to 1000 MiB; 4 MiB parts two at a time by default.
const LIMITS: PartLimits = { maxParts: 100, minPartSize: 2 * MiB, maxPartSize: 50 * MiB, maxObjectSize: 1000 * MiB, defaultPartSize: 4 * MiB, defaultConcurrency: 2, configuredMargin: 1 };

test('without a hint the plan is the default part size and concurrency, with its capacity and buffer memory', () => {
  assert.deepEqual(planParts(LIMITS, undefined), { partSize: 4 * MiB, concurrency: 2, capacity: 400 * MiB, bufferBytes: 4 * MiB * (2 + EXTRA_PART_BUFFERS) });
  assert.deepEqual(planParts(LIMITS, 0), planParts(LIMITS, undefined), 'an empty hint is no hint');
  assert.deepEqual(planParts(LIMITS, Number.NaN), planParts(LIMITS, undefined));
});

test('a hint grows the parts, in whole MiB, until the hint times the margin fits in the part count', () => {
  for (let hint = 1; hint <= 2000 * MiB; hint = Math.ceil(hint * 1.7)) {
    const plan = planParts(LIMITS, hint);
    assert.equal(plan.partSize % MiB, 0, `${hint}: whole MiB`);
    assert.ok(plan.capacity >= Math.min(hint * SIZE_HINT_MARGIN, LIMITS.maxObjectSize), `${hint}: ${plan.capacity}`);
    assert.ok(plan.partSize === LIMITS.defaultPartSize || plan.partSize - MiB < (hint * SIZE_HINT_MARGIN) / LIMITS.maxParts, `${hint}: no bigger than needed`);
    assert.ok(plan.capacity <= LIMITS.maxObjectSize && plan.partSize <= LIMITS.maxPartSize);
  }
  assert.equal(planParts(LIMITS, 300 * MiB).partSize, 6 * MiB);
});

test('a configured part size is kept when it fits, and raised to configuredMargin × the hint when it does not', () => {
  assert.deepEqual(planParts(LIMITS, 100 * MiB, { partSize: 3 * MiB, concurrency: 5 }), { partSize: 3 * MiB, concurrency: 5, capacity: 300 * MiB, bufferBytes: 18 * MiB });
  const exact = planParts(LIMITS, 500 * MiB, { partSize: 3 * MiB });
  assert.equal(exact.partSize, 5 * MiB);
  assert.equal(exact.raisedFrom, 3 * MiB);
  const withHeadroom = planParts({ ...LIMITS, configuredMargin: SIZE_HINT_MARGIN }, 500 * MiB, { partSize: 3 * MiB });
  assert.equal(withHeadroom.partSize, 10 * MiB);
  assert.equal(withHeadroom.raisedFrom, 3 * MiB);
});

test('parts stay within the store limits, whatever is configured or hinted', () => {
  assert.equal(planParts(LIMITS, undefined, { partSize: 1 }).partSize, LIMITS.minPartSize);
  assert.equal(planParts(LIMITS, 10 * 1000 * MiB).partSize, 10 * MiB, 'a hint above the object limit plans for the limit');
  assert.equal(planParts({ ...LIMITS, maxPartSize: 8 * MiB }, 1000 * MiB).partSize, 8 * MiB);
});
