// STORAGE_TYPE=gcs against the strict GCS stand-in (test/support/gcs-server.ts) with the real
// @google-cloud/storage client: the shared contract suite (one streaming request, and 256 KiB chunks),
// then what is specific to GCS: one streaming request, the session cancelled and never finalized on
// failure, root cause over cleanup, classification, resume in chunked mode, back-pressure. The settings
// rules are in test/unit/storage/gcs.test.ts.
import assert from 'node:assert/strict';
import { PassThrough, Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { Storage } from '@google-cloud/storage';
import { pino } from 'pino';
import { StorageError } from '../../../src/errors.ts';
import { gcs } from '../../../src/storage/gcs.ts';
import type { StorageTarget } from '../../../src/storage/types.ts';
import { GCS_CHUNK_UNIT, startGcsServer, type GcsServer } from '../../support/gcs-server.ts';
import { settingsFrom } from '../../support/storage-settings.ts';
import { body, bodyFailingOnce, countingBody, patternBytes, sha256, steadyValue, storageContract, TEST_METADATA, uploadRequest } from '../storage-contract.ts';

const BUCKET = 'planb-gcs-test';
const KiB = 1024;
const MiB = 1024 * KiB;

function openTarget(server: GcsServer, vars: Record<string, string> = {}, bucket = BUCKET): StorageTarget {
  return gcs.open({ bucket, endpoint: server.url, region: undefined }, settingsFrom(gcs, vars));
}

// The contract's harness: reads go through the SDK; leftovers include sessions still open.
async function harness(vars: Record<string, string>) {
  const server = await startGcsServer({ buckets: [BUCKET] });
  const client = new Storage({ apiEndpoint: server.url, projectId: 'test-project' });
  return {
    target: openTarget(server, vars),
    partSize: GCS_CHUNK_UNIT,
    read: async (key: string) => {
      const file = client.bucket(BUCKET).file(key);
      const [exists] = await file.exists();
      return exists ? (await file.download())[0] : undefined;
    },
    list: async (prefix: string) => {
      const [files] = await client.bucket(BUCKET).getFiles({ prefix });
      const open = server.openSessions().filter((session) => session.name.startsWith(prefix));
      return [...files.map((file) => file.name), ...open.map((session) => `${session.name} (open upload session)`)];
    },
    teardown: () => server.close(),
  };
}

storageContract('gcs', () => harness({}));
storageContract('gcs with STORAGE_PART_SIZE=256KiB', () => harness({ STORAGE_PART_SIZE: '256KiB' }));

describe('gcs target', () => {
  let server: GcsServer;
  let client: Storage;
  let target: StorageTarget;
  let counter = 0;
  const uniqueKey = (label: string) => `backups/${label}-${++counter}.dump`;
  const request = (key: string, data: Readable, signal = new AbortController().signal) => uploadRequest(key, data, { signal });
  const exists = async (key: string) => (await client.bucket(BUCKET).file(key).exists())[0];
  const sessionsFor = (key: string) => server.sessions().filter((session) => session.name === key);
  // The sessions for a key once the server has seen every connection to them end (a request cut by
  // the client is noticed a moment later); fails if one is still streaming after two seconds.
  const settledSessions = async (key: string) => {
    const deadline = Date.now() + 2_000;
    while (sessionsFor(key).some((session) => session.streaming) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10));
    return sessionsFor(key).map((session) => [session.state, session.streaming]);
  };

  before(async () => {
    server = await startGcsServer({ buckets: [BUCKET] });
    client = new Storage({ apiEndpoint: server.url, projectId: 'test-project' });
    target = openTarget(server);
  });
  after(async () => {
    await server?.close();
  });

  test('a multi-MiB stream goes up in one streaming request and downloads byte-identical', async () => {
    const key = uniqueKey('round-trip');
    const data = patternBytes(24 * GCS_CHUNK_UNIT + 12_345, 3);
    const before = server.requests.length;
    const stored = await target.upload(request(key, body(data)));
    const sent = server.requests.slice(before);
    assert.equal(stored.url, `gs://${BUCKET}/${key}`);
    const [back] = await client.bucket(BUCKET).file(key).download();
    assert.equal(back.length, data.length);
    assert.equal(sha256(back), sha256(data));
    assert.deepEqual(sent.map((r) => [r.method, r.contentRange, r.query.ifGenerationMatch]), [
      ['POST', undefined, '0'],
      ['PUT', 'bytes 0-*/*', undefined],
    ]);
    const [metadata] = await client.bucket(BUCKET).file(key).getMetadata();
    assert.equal(metadata.contentType, 'application/zstd');
    assert.deepEqual(metadata.metadata, TEST_METADATA);
  });

  test('STORAGE_CLASS sets the storage class of the object', async () => {
    const key = uniqueKey('nearline');
    await openTarget(server, { STORAGE_CLASS: 'NEARLINE' }).upload(request(key, body(patternBytes(1000))));
    const [metadata] = await client.bucket(BUCKET).file(key).getMetadata();
    assert.equal(metadata.storageClass, 'NEARLINE');
  });

  test('a body that fails mid-stream leaves no object, cancels the session, and rejects with the body error', async () => {
    const key = uniqueKey('dump-died');
    const failure = new Error('pg_dump exited with code 1');
    const cancelledBefore = server.cancelledCount();
    const opened = () => sessionsFor(key).length > 0;
    await assert.rejects(target.upload(request(key, bodyFailingOnce(patternBytes(3 * MiB + 5), opened, failure))), (error) => error === failure);
    assert.equal(await exists(key), false);
    const [files] = await client.bucket(BUCKET).getFiles({ prefix: key });
    assert.deepEqual(files, []);
    assert.deepEqual(await settledSessions(key), [['cancelled', false]], 'cancelled, not finalized, no request left open');
    assert.equal(server.cancelledCount(), cancelledBefore + 1);
  });

  test('an abort mid-upload settles within seconds, leaves nothing and rejects with the abort reason', async () => {
    const key = uniqueKey('aborted');
    const controller = new AbortController();
    const reason = new Error('interrupted by SIGTERM');
    const source = countingBody(patternBytes(64 * KiB, 9));
    const upload = target.upload(request(key, source.stream, controller.signal));
    while (source.pulled() < 2 * MiB) await new Promise((resolve) => setTimeout(resolve, 10));
    const started = Date.now();
    controller.abort(reason);
    await assert.rejects(upload, (error) => error === reason);
    // Tens of ms when it works; the bound is the 8 s main.ts allows after SIGTERM.
    assert.ok(Date.now() - started < 8_000, `settled in ${Date.now() - started} ms`);
    assert.equal(await exists(key), false);
    assert.deepEqual(await settledSessions(key), [['cancelled', false]]);
  });

  test('when the cancel fails, the upload still cuts its own request, warns, and the session is never finalized', async () => {
    const key = uniqueKey('cancel-refused');
    const failure = new Error('mariadb-dump died');
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => lines.push(line) });
    server.inject({ status: 500, times: 1, when: (r) => r.method === 'DELETE' });
    const opened = () => sessionsFor(key).length > 0;
    await assert.rejects(target.upload({ ...request(key, bodyFailingOnce(patternBytes(2 * MiB), opened, failure)), log }), (error) => error === failure);
    assert.deepEqual(await settledSessions(key), [['open', false]], 'no request is left streaming into the session');
    assert.equal(await exists(key), false);
    assert.equal(lines.length, 1);
    const warning = JSON.parse(lines[0] ?? '{}') as { msg?: string; status?: number };
    assert.match(warning.msg ?? '', /could not cancel the GCS upload session/);
    assert.equal(warning.status, 500);
    assert.doesNotMatch(lines[0] ?? '', /upload_id/, 'the session URI is a credential and is not logged');
  });

  test('an existing object is never overwritten', async () => {
    const key = uniqueKey('exists');
    await client.bucket(BUCKET).file(key).save(Buffer.from('the first backup'), { resumable: true });
    await assert.rejects(target.upload(request(key, body(patternBytes(2 * MiB)))), (error) => {
      assert.ok(error instanceof StorageError);
      assert.equal(error.kind, 'other');
      assert.match(error.message, /refusing to overwrite/);
      return true;
    });
    const [back] = await client.bucket(BUCKET).file(key).download();
    assert.equal(back.toString(), 'the first backup');
  });

  test('a missing bucket is a denied StorageError', async () => {
    await assert.rejects(openTarget(server, {}, 'no-such-bucket').upload(request('x.dump', body(patternBytes(10)))), (error) => {
      assert.ok(error instanceof StorageError);
      assert.equal(error.kind, 'denied');
      assert.match(error.message, /no-such-bucket does not exist/);
      return true;
    });
  });

  test('a request without a valid token (401) and a forbidden one (403) are denied', async () => {
    const guarded = await startGcsServer({ buckets: [BUCKET], token: 'only-this' });
    try {
      await assert.rejects(openTarget(guarded).upload(request('x.dump', body(patternBytes(10)))), (error) => error instanceof StorageError && error.kind === 'denied');
    } finally {
      await guarded.close();
    }
    server.inject({ status: 403, times: 1, when: (r) => r.method === 'POST', message: 'caller does not have storage.objects.create access' });
    await assert.rejects(target.upload(request(uniqueKey('forbidden'), body(patternBytes(10)))), (error) => {
      assert.ok(error instanceof StorageError);
      assert.equal(error.kind, 'denied');
      assert.match(error.message, /HTTP 403: caller does not have storage.objects.create access/);
      return true;
    });
  });

  test('a server answering 503 is an unavailable StorageError after the retries, and leaves nothing', async () => {
    const key = uniqueKey('unavailable');
    server.inject({ status: 503, times: 100 });
    try {
      await assert.rejects(target.upload(request(key, body(patternBytes(MiB)))), (error) => error instanceof StorageError && error.kind === 'unavailable');
    } finally {
      server.clearFaults();
    }
    assert.equal(await exists(key), false);
    assert.deepEqual(sessionsFor(key), []);
  });

  test('a transient 503 when creating the session is retried and the upload succeeds', async () => {
    const key = uniqueKey('retried');
    const data = patternBytes(MiB, 4);
    server.inject({ status: 503, times: 1, when: (r) => r.method === 'POST' });
    await target.upload(request(key, body(data)));
    assert.equal(server.objects(BUCKET).find((object) => object.name === key)?.sha256, sha256(data));
  });

  test('a server failure mid-stream fails as unavailable in the default mode and leaves nothing', async () => {
    const key = uniqueKey('lost-stream');
    server.inject({ status: 503, times: 1, when: (r) => r.method === 'PUT' && r.contentRange === 'bytes 0-*/*' });
    await assert.rejects(target.upload(request(key, body(patternBytes(4 * MiB), { delayMs: 2 }))), (error) => {
      assert.ok(error instanceof StorageError, String(error));
      assert.equal(error.kind, 'unavailable');
      return true;
    });
    assert.equal(await exists(key), false);
    assert.deepEqual(sessionsFor(key).map((s) => s.state), ['cancelled']);
  });

  test('a pipeline feeding the target sees the classified StorageError, not the SDK error', async () => {
    const key = uniqueKey('upstream-sees');
    server.inject({ status: 503, times: 1, when: (r) => r.method === 'PUT' && r.contentRange === 'bytes 0-*/*' });
    const stage = new PassThrough();
    // As the run does: the body is a stage of the caller's own pipeline, which rejects with the first
    // error any stage reports — here the one the target destroys the body with.
    await assert.rejects(pipeline(body(patternBytes(4 * MiB), { delayMs: 2 }), stage, async (source: AsyncIterable<Buffer>) => {
      // pipeline() hands a Node stream on as it is.
      await target.upload(request(key, source as Readable));
    }), (error) => {
      assert.ok(error instanceof StorageError, String(error));
      assert.equal(error.kind, 'unavailable');
      return true;
    });
    assert.ok(stage.errored instanceof StorageError);
    assert.equal(await exists(key), false);
  });

  test('with STORAGE_PART_SIZE, a server failure mid-stream is resumed and the object is complete', async () => {
    const key = uniqueKey('resumed');
    const data = patternBytes(5 * MiB + 99, 6);
    server.inject({ status: 503, times: 1, when: (r) => r.method === 'PUT' && r.contentRange?.startsWith(`bytes ${MiB}-`) === true });
    await openTarget(server, { STORAGE_PART_SIZE: '1MiB' }).upload(request(key, body(data)));
    const [back] = await client.bucket(BUCKET).file(key).download();
    assert.equal(sha256(back), sha256(data));
    const ranges = server.requests.filter((r) => r.path.endsWith('/o') && r.method === 'PUT' && r.contentRange?.startsWith(`bytes ${MiB}-`));
    assert.equal(ranges.length, 2, 'the failed chunk was sent again');
  });

  test('a stalled server slows the body down instead of buffering it', async () => {
    const key = uniqueKey('stalled');
    const resume = server.pauseUploads();
    const controller = new AbortController();
    const source = countingBody(patternBytes(64 * KiB, 8));
    const upload = target.upload(request(key, source.stream, controller.signal));
    try {
      // The body stops being read once the buffers between it and the stalled server are full.
      const stalledAt = await steadyValue(() => source.pulled());
      // Loopback socket buffers and the streams' high-water marks: a few MiB, never the whole body.
      assert.ok(stalledAt < 32 * MiB, `read ${stalledAt} bytes ahead of a stalled server`);
    } finally {
      controller.abort(new Error('test done'));
      resume();
      await upload.catch(() => undefined);
    }
    assert.equal(await exists(key), false);
  });
});
