// The strict GCS stand-in (test/support/gcs-server.ts) behaves like GCS: the real @google-cloud/storage
// client round-trips through it, and raw HTTP shows it rejects what GCS rejects.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { Storage } from '@google-cloud/storage';
import { OAuth2Client } from 'google-auth-library';
import { GCS_CHUNK_UNIT, startGcsServer, type GcsServer } from '../../support/gcs-server.ts';
import { sha256, waitFor } from '../storage-contract.ts';

const BUCKET = 'backups';
const KiB = 1024;

type Answer = { status: number; headers: Headers; text: string };

async function send(url: string, init: { method: string; headers?: Record<string, string>; body?: Buffer | string }): Promise<Answer> {
  const response = await fetch(url, { method: init.method, headers: init.headers, body: init.body });
  return { status: response.status, headers: response.headers, text: await response.text() };
}

describe('the strict GCS test server', () => {
  let server: GcsServer;
  let storage: Storage;
  let counter = 0;
  const uniqueName = (label: string) => `${label}-${++counter}.bin`;

  // Opens a session by hand and returns its URI.
  async function initiate(name: string, query = ''): Promise<string> {
    const answer = await send(`${server.url}/upload/storage/v1/b/${BUCKET}/o?uploadType=resumable&name=${encodeURIComponent(name)}${query}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ contentType: 'application/octet-stream', metadata: { origin: 'raw' } }),
    });
    assert.equal(answer.status, 200, answer.text);
    const location = answer.headers.get('location');
    assert.ok(location, 'the session URI is in Location');
    return location;
  }

  const put = (session: string, range: string, body?: Buffer) =>
    send(session, { method: 'PUT', headers: { 'Content-Range': range }, ...(body && { body }) });

  const visible = (name: string) => server.objects(BUCKET).some((object) => object.name === name);

  before(async () => {
    server = await startGcsServer({ buckets: [BUCKET] });
    storage = new Storage({ apiEndpoint: server.url, projectId: 'test-project' });
  });
  after(async () => {
    await server?.close();
  });

  test('the real client streams a default upload in one request and downloads it byte-identical with CRC32C checks', async () => {
    const data = randomBytes(3 * 1024 * KiB + 12_345);
    const name = uniqueName('default');
    const before = server.requests.length;
    await pipeline(Readable.from([data]), storage.bucket(BUCKET).file(name).createWriteStream({ resumable: true }));
    const sent = server.requests.slice(before);
    assert.deepEqual(sent.map((r) => [r.method, r.contentRange]), [['POST', undefined], ['PUT', 'bytes 0-*/*']]);
    assert.ok(sent[1]?.chunked, 'the body is sent with chunked transfer encoding, length unknown');
    // download() validates the CRC32C from x-goog-hash: a wrong server checksum fails here.
    const [back] = await storage.bucket(BUCKET).file(name).download();
    assert.equal(sha256(back), sha256(data));
  });

  test('the real client in chunked mode sends 256 KiB multiples and only the last request finalizes', async () => {
    const data = randomBytes(2 * 512 * KiB + 1000);
    const name = uniqueName('chunked');
    const before = server.requests.length;
    await pipeline(Readable.from([data]), storage.bucket(BUCKET).file(name).createWriteStream({ resumable: true, chunkSize: 512 * KiB }));
    const ranges = server.requests.slice(before).filter((r) => r.method === 'PUT').map((r) => r.contentRange);
    assert.deepEqual(ranges, [`bytes 0-${512 * KiB - 1}/*`, `bytes ${512 * KiB}-${1024 * KiB - 1}/*`, `bytes ${1024 * KiB}-${data.length - 1}/${data.length}`]);
    const [back] = await storage.bucket(BUCKET).file(name).download();
    assert.equal(sha256(back), sha256(data));
  });

  test('the real client lists, reads metadata and deletes objects', async () => {
    const name = `listing/${uniqueName('meta')}`;
    await storage.bucket(BUCKET).file(name).save(Buffer.from('hello'), { resumable: true, metadata: { contentType: 'text/plain', metadata: { k: 'v' } } });
    const [files] = await storage.bucket(BUCKET).getFiles({ prefix: 'listing/' });
    assert.deepEqual(files.map((file) => file.name), [name]);
    const [metadata] = await storage.bucket(BUCKET).file(name).getMetadata();
    assert.equal(metadata.size, '5', 'sizes are int64 strings in the JSON API');
    assert.equal(metadata.contentType, 'text/plain');
    assert.deepEqual(metadata.metadata, { k: 'v' });
    await storage.bucket(BUCKET).file(name).delete();
    const [exists] = await storage.bucket(BUCKET).file(name).exists();
    assert.equal(exists, false);
  });

  test('an object stays invisible until the request carrying its last byte completes', async () => {
    const name = uniqueName('staged');
    const data = randomBytes(GCS_CHUNK_UNIT + 10);
    const session = await initiate(name);
    const first = await put(session, `bytes 0-${GCS_CHUNK_UNIT - 1}/*`, data.subarray(0, GCS_CHUNK_UNIT));
    assert.equal(first.status, 308);
    assert.equal(first.headers.get('range'), `bytes=0-${GCS_CHUNK_UNIT - 1}`);
    assert.equal(visible(name), false);
    const [exists] = await storage.bucket(BUCKET).file(name).exists();
    assert.equal(exists, false, 'GET metadata answers 404 while the upload is incomplete');
    const last = await put(session, `bytes ${GCS_CHUNK_UNIT}-${data.length - 1}/${data.length}`, data.subarray(GCS_CHUNK_UNIT));
    assert.equal(last.status, 200);
    const resource = JSON.parse(last.text) as { name: string; size: string; metadata: Record<string, string> };
    assert.equal(resource.name, name);
    assert.equal(resource.size, String(data.length));
    assert.deepEqual(resource.metadata, { origin: 'raw' });
    assert.equal(visible(name), true);
  });

  test('a non-final chunk smaller than 256 KiB is rejected with 400, as GCS does', async () => {
    const session = await initiate(uniqueName('small-chunk'));
    const answer = await put(session, 'bytes 0-1023/*', randomBytes(1024));
    assert.equal(answer.status, 400);
    assert.match(answer.text, /equal or greater than 262144/);
    const status = await put(session, 'bytes */*');
    assert.equal(status.status, 308);
    assert.equal(status.headers.get('range'), null, 'nothing was persisted');
  });

  test('a non-final chunk that is not a multiple of 256 KiB is persisted only up to the last 256 KiB boundary', async () => {
    const session = await initiate(uniqueName('ragged-chunk'));
    const answer = await put(session, `bytes 0-${300 * KiB - 1}/*`, randomBytes(300 * KiB));
    assert.equal(answer.status, 308);
    assert.equal(answer.headers.get('range'), `bytes=0-${GCS_CHUNK_UNIT - 1}`);
  });

  test('a chunk that starts past the persisted bytes is rejected with a text/plain 503, as GCS does', async () => {
    const session = await initiate(uniqueName('gap'));
    const answer = await put(session, `bytes ${GCS_CHUNK_UNIT}-${2 * GCS_CHUNK_UNIT - 1}/*`, randomBytes(GCS_CHUNK_UNIT));
    assert.equal(answer.status, 503);
    assert.match(answer.headers.get('content-type') ?? '', /^text\/plain/);
    assert.match(answer.text, /upload offset is 262144 byte\(s\), which exceeds already uploaded size of 0 byte\(s\)/);
    assert.equal(server.sessions().find((s) => s.id === new URL(session).searchParams.get('upload_id'))?.persisted, 0);
  });

  test('a retried chunk overlapping persisted bytes is accepted without duplicating them', async () => {
    const name = uniqueName('overlap');
    const data = randomBytes(3 * GCS_CHUNK_UNIT);
    const session = await initiate(name);
    assert.equal((await put(session, `bytes 0-${2 * GCS_CHUNK_UNIT - 1}/*`, data.subarray(0, 2 * GCS_CHUNK_UNIT))).status, 308);
    const last = await put(session, `bytes ${GCS_CHUNK_UNIT}-${data.length - 1}/${data.length}`, data.subarray(GCS_CHUNK_UNIT));
    assert.equal(last.status, 200);
    const [back] = await storage.bucket(BUCKET).file(name).download();
    assert.equal(sha256(back), sha256(data));
  });

  test('a status query reports the persisted range, and finalizes when its total equals the persisted bytes', async () => {
    const name = uniqueName('status');
    const session = await initiate(name);
    assert.equal((await put(session, `bytes 0-${GCS_CHUNK_UNIT - 1}/*`, randomBytes(GCS_CHUNK_UNIT))).status, 308);
    const query = await put(session, 'bytes */*');
    assert.equal(query.status, 308);
    assert.equal(query.headers.get('range'), `bytes=0-${GCS_CHUNK_UNIT - 1}`);
    assert.equal(visible(name), false);
    const finalize = await put(session, `bytes */${GCS_CHUNK_UNIT}`);
    assert.equal(finalize.status, 200);
    assert.equal(visible(name), true);
    const again = await put(session, 'bytes */*');
    assert.equal(again.status, 200, 'a completed session answers with the object');
  });

  test('a request cut off mid-body never finalizes: its bytes are kept in whole 256 KiB units', async () => {
    const name = uniqueName('cut-off');
    const session = await initiate(name);
    const id = new URL(session).searchParams.get('upload_id');
    await new Promise<void>((resolve) => {
      const request = httpRequest(session, { method: 'PUT', headers: { 'Content-Range': 'bytes 0-*/*', 'Transfer-Encoding': 'chunked' } });
      request.on('error', () => resolve());
      request.write(randomBytes(600 * KiB), () => {
        const poll = setInterval(() => {
          if ((server.sessions().find((s) => s.id === id)?.streaming ?? false) && server.requests.at(-1)?.contentRange === 'bytes 0-*/*') {
            clearInterval(poll);
            setTimeout(() => request.destroy(), 100);
          }
        }, 10);
      });
    });
    await waitFor(() => server.sessions().find((s) => s.id === id)?.streaming === false);
    const state = server.sessions().find((s) => s.id === id);
    assert.equal(state?.state, 'open');
    assert.equal(state?.persisted, 2 * GCS_CHUNK_UNIT);
    assert.equal(visible(name), false);
    const [exists] = await storage.bucket(BUCKET).file(name).exists();
    assert.equal(exists, false);
  });

  test('cancelling a session answers 499, and the session refuses everything after', async () => {
    const name = uniqueName('cancelled');
    const session = await initiate(name);
    const cancelledBefore = server.cancelledCount();
    assert.equal((await put(session, `bytes 0-${GCS_CHUNK_UNIT - 1}/*`, randomBytes(GCS_CHUNK_UNIT))).status, 308);
    assert.equal((await send(session, { method: 'DELETE' })).status, 499);
    assert.equal(server.cancelledCount(), cancelledBefore + 1);
    assert.equal((await put(session, `bytes ${GCS_CHUNK_UNIT}-${GCS_CHUNK_UNIT + 9}/${GCS_CHUNK_UNIT + 10}`, randomBytes(10))).status, 499);
    assert.equal((await put(session, `bytes */${GCS_CHUNK_UNIT}`)).status, 499);
    assert.equal(visible(name), false);
    assert.equal(server.openSessions().some((s) => s.name === name), false);
  });

  test('cancelling answers a request still streaming into the session with 499', async () => {
    const name = uniqueName('cancel-streaming');
    const session = await initiate(name);
    const id = new URL(session).searchParams.get('upload_id');
    const answered = new Promise<number | undefined>((resolve) => {
      const request = httpRequest(session, { method: 'PUT', headers: { 'Content-Range': 'bytes 0-*/*', 'Transfer-Encoding': 'chunked' } });
      request.on('response', (response) => {
        response.resume();
        resolve(response.statusCode);
      });
      request.on('error', () => resolve(undefined));
      request.write(randomBytes(64 * KiB));
    });
    await waitFor(() => server.sessions().find((s) => s.id === id)?.streaming === true);
    assert.equal((await send(session, { method: 'DELETE' })).status, 499);
    assert.equal(await answered, 499);
    assert.equal(visible(name), false);
  });

  test('an unknown session answers 404', async () => {
    const answer = await put(`${server.url}/upload/storage/v1/b/${BUCKET}/o?uploadType=resumable&upload_id=nope`, 'bytes */*');
    assert.equal(answer.status, 404);
  });

  test('ifGenerationMatch=0 is refused with 412 at initiation and at finalization when the object exists', async () => {
    const name = uniqueName('precondition');
    const original = Buffer.from('original');
    await storage.bucket(BUCKET).file(name).save(original, { resumable: true });
    await assert.rejects(
      pipeline(Readable.from([Buffer.from('other')]), storage.bucket(BUCKET).file(name).createWriteStream({ resumable: true, preconditionOpts: { ifGenerationMatch: 0 } })),
      (error: { code?: number; response?: { status?: number } }) => (error.response?.status ?? error.code) === 412,
    );

    const late = uniqueName('precondition-late');
    const session = await initiate(late, '&ifGenerationMatch=0');
    await storage.bucket(BUCKET).file(late).save(original, { resumable: true });
    const finalize = await put(session, 'bytes 0-*/*', Buffer.from('second writer'));
    assert.equal(finalize.status, 412);
    const [back] = await storage.bucket(BUCKET).file(late).download();
    assert.equal(back.toString(), 'original', 'the existing object is untouched');
  });

  test('an unknown bucket answers 404 to the client', async () => {
    await assert.rejects(storage.bucket('no-such-bucket').getMetadata(), (error: { code?: number }) => error.code === 404);
    await assert.rejects(
      pipeline(Readable.from([Buffer.from('x')]), storage.bucket('no-such-bucket').file('x').createWriteStream({ resumable: true })),
      (error: { code?: number; response?: { status?: number } }) => (error.response?.status ?? error.code) === 404,
    );
  });

  test('with a token configured, requests without it get 401 while session URIs need none', async () => {
    const guarded = await startGcsServer({ buckets: [BUCKET], token: 'test-token' });
    try {
      const anonymous = new Storage({ apiEndpoint: guarded.url, projectId: 'test-project' });
      await assert.rejects(anonymous.bucket(BUCKET).getMetadata(), (error: { code?: number }) => error.code === 401);

      const authClient = new OAuth2Client();
      authClient.setCredentials({ access_token: 'test-token', expiry_date: Date.now() + 3_600_000 });
      const authorized = new Storage({ apiEndpoint: guarded.url, projectId: 'test-project', useAuthWithCustomEndpoint: true, authClient });
      const file = authorized.bucket(BUCKET).file('guarded.bin');
      const [session] = await file.createResumableUpload({ preconditionOpts: { ifGenerationMatch: 0 } });
      await pipeline(Readable.from([Buffer.from('guarded')]), file.createWriteStream({ uri: session, offset: 0, resumable: true }));
      const [back] = await file.download();
      assert.equal(back.toString(), 'guarded');
      const initiation = guarded.requests.find((r) => r.method === 'POST');
      const data = guarded.requests.find((r) => r.method === 'PUT');
      assert.equal(initiation?.authorized, true);
      assert.equal(data?.authorized, true, 'the session URI is accepted without a token');
    } finally {
      await guarded.close();
    }
  });

  test('injected faults answer instead of serving, then stop', async () => {
    server.inject({ status: 503, times: 1, when: (r) => r.method === 'GET' });
    const first = await send(`${server.url}/storage/v1/b/${BUCKET}`, { method: 'GET' });
    const second = await send(`${server.url}/storage/v1/b/${BUCKET}`, { method: 'GET' });
    assert.equal(first.status, 503);
    assert.equal(second.status, 200);
  });
});
