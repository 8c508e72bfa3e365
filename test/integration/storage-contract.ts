// The contract every storage target must pass (see the comment on StorageTarget in src/storage/types.ts),
// and the helpers the storage tests share. Each target's test file calls storageContract() once with a
// harness that talks to a real server or emulator; the same assertions then run for local, S3, GCS and Azure.
//
// Usage, in test/integration/storage/<type>.test.ts:
//   storageContract('s3', async () => {
//     const server = await startS3Server();
//     return { target, read, list, partSize, teardown: () => server.stop() };
//   });
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { pino } from 'pino';
import { StorageError } from '../../src/errors.ts';
import type { StorageTarget, UploadRequest } from '../../src/storage/types.ts';

// What a target's test file provides to the contract suite.
export type ContractHarness = {
  // A target opened with settings that make `partSize` the size of one part/chunk/block.
  target: StorageTarget;
  partSize: number;
  // The object's bytes, read back through the SDK; undefined when there is no object at the key.
  read(key: string): Promise<Buffer | undefined>;
  // Every key under the prefix, including anything a target could leave behind (temporary names).
  list(prefix: string): Promise<string[]>;
  teardown(): Promise<void>;
};

// The metadata every test upload carries.
export const TEST_METADATA = { 'planb-run-id': '20261122T043300Z-3f9a1c2e', 'planb-db-type': 'postgresql' } as const;

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

// An upload of `data` to `key` as a run makes it (zstd, TEST_METADATA, no size hint, a silent log).
export function uploadRequest(key: string, data: Readable, overrides: Partial<UploadRequest> = {}): UploadRequest {
  return {
    key,
    body: data,
    signal: new AbortController().signal,
    contentType: 'application/zstd',
    metadata: TEST_METADATA,
    sizeHint: undefined,
    log: pino({ level: 'silent' }),
    ...overrides,
  };
}

// Polls `condition` until it holds; throws after `timeoutMs`.
export async function waitFor(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`condition not reached within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

// Deterministic bytes that do not compress: the same seed always gives the same stream.
export function patternBytes(length: number, seed = 1): Buffer {
  const out = Buffer.alloc(Math.ceil(length / 4) * 4);
  let state = seed >>> 0 || 1;
  for (let i = 0; i < out.length; i += 4) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    out.writeUInt32LE(state >>> 0, i);
  }
  return out.subarray(0, length);
}

// A body that yields `data` in chunks, then optionally fails with `error` instead of ending.
export function body(data: Buffer, options: { chunk?: number; failWith?: Error; delayMs?: number } = {}): Readable {
  const chunk = options.chunk ?? 64 * 1024;
  return Readable.from(
    (async function* () {
      for (let offset = 0; offset < data.length; offset += chunk) {
        if (options.delayMs) await new Promise((resolve) => setTimeout(resolve, options.delayMs));
        yield data.subarray(offset, offset + chunk);
      }
      if (options.failWith) throw options.failWith;
    })(),
    { objectMode: false },
  );
}

// A body that yields `data`, then fails with `failure` once `reached()` is true: a dump that dies after
// the upload got somewhere (a part stored, a session opened), however long that takes on a busy machine.
export function bodyFailingOnce(data: Buffer, reached: () => boolean | Promise<boolean>, failure: Error, timeoutMs = 30_000): Readable {
  return Readable.from(
    (async function* () {
      for (let offset = 0; offset < data.length; offset += 64 * 1024) yield data.subarray(offset, offset + 64 * 1024);
      const deadline = Date.now() + timeoutMs;
      while (!(await reached())) {
        if (Date.now() > deadline) throw new Error(`the upload did not get far enough within ${timeoutMs} ms`);
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
      throw failure;
    })(),
    { objectMode: false },
  );
}

// A body that counts what the uploader pulled from it; endless unless `total` is given.
export function countingBody(chunk: Buffer, total = Infinity): { stream: Readable; pulled(): number } {
  let pulled = 0;
  const stream = new Readable({
    read() {
      if (pulled >= total) {
        this.push(null);
        return;
      }
      pulled += chunk.length;
      this.push(chunk);
    },
  });
  return { stream, pulled: () => pulled };
}

// Waits until `read()` has not changed for `quietMs` and returns that value; throws when it keeps
// changing for `timeoutMs`. For "stops pulling" assertions that must not depend on how fast a busy
// machine fills the buffers before the stop.
export async function steadyValue(read: () => number, quietMs = 300, timeoutMs = 30_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let value = read();
  let since = Date.now();
  while (Date.now() - since < quietMs) {
    if (Date.now() > deadline) throw new Error(`still changing after ${timeoutMs} ms (now ${value})`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    const next = read();
    if (next !== value) {
      value = next;
      since = Date.now();
    }
  }
  return value;
}

// A body that never ends on its own: it trickles bytes until destroyed.
function endlessBody(chunk: Buffer): Readable {
  return Readable.from(
    (async function* () {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, 5));
        yield chunk;
      }
    })(),
    { objectMode: false },
  );
}

// Runs the contract suite for one target.
export function storageContract(name: string, setup: () => Promise<ContractHarness>): void {
  describe(`${name} storage contract`, () => {
    let harness: ContractHarness;
    const prefix = `contract-${randomBytes(4).toString('hex')}/`;
    const request = (key: string, data: Readable, signal = new AbortController().signal) => uploadRequest(`${prefix}${key}`, data, { signal });

    before(async () => {
      harness = await setup();
    });
    after(async () => {
      await harness?.teardown();
    });

    test(`${name} stores a stream of several parts byte-identical`, async () => {
      const data = patternBytes(harness.partSize * 3 + 12_345, 7);
      await harness.target.upload(request('multi.bin', body(data)));
      const stored = await harness.read(`${prefix}multi.bin`);
      assert.ok(stored, 'the object exists');
      assert.equal(stored.length, data.length);
      assert.equal(sha256(stored), sha256(data));
    });

    test(`${name} stores a body smaller than one part`, async () => {
      const data = patternBytes(1000, 3);
      await harness.target.upload(request('small.bin', body(data)));
      const stored = await harness.read(`${prefix}small.bin`);
      assert.equal(stored && sha256(stored), sha256(data));
    });

    test(`${name} leaves nothing when the body fails mid-stream, and reports the body's error`, async () => {
      const failure = new Error('dump tool died mid-stream');
      const data = patternBytes(harness.partSize * 2 + 777, 11);
      await assert.rejects(harness.target.upload(request('failed.bin', body(data, { failWith: failure }))), (error) => {
        assert.equal((error as Error).message, failure.message, 'the root cause, not a cleanup error');
        return true;
      });
      assert.equal(await harness.read(`${prefix}failed.bin`), undefined, 'no object at the key');
      assert.deepEqual((await harness.list(prefix)).filter((key) => key.includes('failed.bin')), [], 'nothing left behind');
    });

    test(`${name} settles within seconds on abort and leaves nothing`, async () => {
      const controller = new AbortController();
      const reason = new Error('aborted by SIGTERM');
      const upload = harness.target.upload(request('aborted.bin', endlessBody(patternBytes(256 * 1024, 5)), controller.signal));
      await new Promise((resolve) => setTimeout(resolve, 500));
      const started = Date.now();
      controller.abort(reason);
      await assert.rejects(upload, (error) => {
        assert.equal((error as Error).message, reason.message, 'the abort reason, not a cleanup error');
        return true;
      });
      assert.ok(Date.now() - started < 10_000, `settled in ${Date.now() - started} ms`);
      assert.equal(await harness.read(`${prefix}aborted.bin`), undefined);
      assert.deepEqual((await harness.list(prefix)).filter((key) => key.includes('aborted.bin')), []);
    });

    test(`${name} downloads a stored object byte-identical, as a stream`, async () => {
      const data = patternBytes(harness.partSize * 2 + 4321, 31);
      await harness.target.upload(request('read/back.bin', body(data)));
      const stream = await harness.target.download(`${prefix}read/back.bin`, new AbortController().signal);
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      assert.equal(sha256(Buffer.concat(chunks)), sha256(data));
    });

    test(`${name} reports a missing key as a 'missing' StorageError before any byte`, async () => {
      await assert.rejects(harness.target.download(`${prefix}no/such.bin`, new AbortController().signal), (error) => {
        assert.ok(error instanceof StorageError, String(error));
        assert.equal(error.kind, 'missing');
        return true;
      });
    });

    test(`${name} lists complete objects under a prefix, with their sizes, and nothing a failed upload left`, async () => {
      const listed = `${prefix}listing/`;
      await harness.target.upload(request('listing/db-20260101T000000Z-aaaa.dump', body(patternBytes(100, 1))));
      await harness.target.upload(request('listing/db-20260102T000000Z-bbbb.dump', body(patternBytes(2_000, 2))));
      await harness.target.upload(request('listing/other-20260103T000000Z-cccc.dump', body(patternBytes(10, 3))));
      await assert.rejects(harness.target.upload(request('listing/db-20260104T000000Z-dddd.dump', body(patternBytes(harness.partSize + 5, 4), { failWith: new Error('died') }))));
      const found = await harness.target.list(`${listed}db-`, new AbortController().signal);
      assert.deepEqual(
        found.map((object) => [object.key, object.bytes]).sort(),
        [[`${listed}db-20260101T000000Z-aaaa.dump`, 100], [`${listed}db-20260102T000000Z-bbbb.dump`, 2_000]],
      );
      assert.deepEqual(await harness.target.list(`${prefix}nothing-here/`, new AbortController().signal), []);
    });

    test(`${name} never overwrites an existing object`, async () => {
      const first = patternBytes(2000, 21);
      await harness.target.upload(request('once.bin', body(first)));
      await assert.rejects(harness.target.upload(request('once.bin', body(patternBytes(3000, 22)))), StorageError);
      const stored = await harness.read(`${prefix}once.bin`);
      assert.equal(stored && sha256(stored), sha256(first), 'the first object is intact');
    });
  });
}
