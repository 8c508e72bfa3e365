// A strict stand-in for the Google Cloud Storage JSON API on 127.0.0.1, for driving the real
// @google-cloud/storage client in tests (no GCS emulator installs from npm or Debian).
//
// It implements the documented resumable upload protocol and rejects what GCS rejects:
// - initiate: POST /upload/storage/v1/b/{bucket}/o?uploadType=resumable (JSON metadata; name in the
//   query or the body; X-Upload-Content-Type / X-Upload-Content-Length) → 200 + Location session URI;
//   404 for an unknown bucket, 412 when ifGenerationMatch already fails;
// - data: PUT {session URI} with `Content-Range: bytes A-B/TOTAL` (TOTAL may be `*`), or
//   `bytes A-*/TOTAL` as the Node client sends when it streams everything in one request, or no
//   Content-Range (the whole object). Incomplete → 308 with `Range: bytes=0-N` (no Range when nothing
//   is persisted); final → 200 with the object resource. A non-final request under 256 KiB → 400; a
//   non-final request that is not a multiple of 256 KiB → only the 256 KiB multiple is persisted and
//   the 308 says so; a start past the persisted bytes → 503 text/plain (GCS's own answer to a gap);
//   bytes already persisted are skipped (a retried chunk);
// - status: PUT with `Content-Range: bytes */TOTAL` or `bytes */*` and no body → 308 (+ Range), or 200
//   with the object once complete; `bytes */N` with N equal to the persisted size finalizes;
// - cancel: DELETE {session URI} → 499; later requests on the session → 499; a request still
//   streaming into the session is answered 499 and its connection closed;
// - an object becomes visible only when the final byte arrives in a request that completed; a request
//   cut off mid-body never finalizes: what it delivered is persisted in 256 KiB units, like GCS.
// - object retention: a `retention: {mode, retainUntilTime}` in the initiate metadata is refused with 400
//   unless the bucket was started with object retention enabled (`retentionBuckets`), and with 400 when
//   the mode is not Unlocked or Locked or the time is not a future RFC 3339 time within 100 years; a
//   stored object keeps it and shows it in its resource;
// Plus object metadata GET, media GET (?alt=media, with x-goog-hash), list, DELETE, ifGenerationMatch
// preconditions (0 = must not exist), bucket GET, and an optional bearer-token check (the session URI
// needs none, as on GCS).
//
// Choices of this server where GCS documents nothing: a second data request while one is streaming
// into the same session → 409; DELETE of a completed session → 400 (the object stays);
// uploadType=media/multipart → 501 (the target never uses them).
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished, pipeline } from 'node:stream/promises';
import { CRC32C } from '@google-cloud/storage';

// GCS persists resumable data in units of 256 KiB; every non-final request must carry at least one.
export const GCS_CHUNK_UNIT = 256 * 1024;
// Object names are at most 1024 bytes of UTF-8 (GCS naming rules).
const MAX_NAME_BYTES = 1024;
// Storage classes the JSON API accepts on upload (the legacy ones included).
const STORAGE_CLASSES = new Set(['STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE', 'MULTI_REGIONAL', 'REGIONAL', 'DURABLE_REDUCED_AVAILABILITY']);
// Object retention may reach at most 100 years ahead (3,155,760,000 s).
const MAX_RETENTION_MS = 3_155_760_000_000;
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$/;
// The JSON metadata of an initiate request is small; anything bigger is a client bug.
const MAX_METADATA_BYTES = 1024 * 1024;

export type GcsServerOptions = {
  buckets: readonly string[];
  // When set, every request except those on a session URI must carry `Authorization: Bearer <token>`.
  token?: string;
  // false: count and hash object bytes without storing them (multi-GiB benchmarks); media GET → 410.
  keepData?: boolean;
  // false: skip CRC32C (pure JS, about one core at 150 MB/s) and leave it out of object resources.
  crc32c?: boolean;
  // false: no checksums at all (MD5, SHA-256, CRC32C), so that a benchmark measures the client.
  hashes?: boolean;
  // Buckets created with object retention enabled; the others refuse an object's retention.
  retentionBuckets?: readonly string[];
};

// An object's retention configuration, as the JSON API writes it.
export type GcsRetention = { mode: 'Unlocked' | 'Locked'; retainUntilTime: string };

// A finished object, as the inspection helpers report it.
export type GcsObjectInfo = {
  bucket: string;
  name: string;
  size: number;
  generation: string;
  contentType: string;
  storageClass: string;
  metadata: Record<string, string>;
  md5Hash: string | undefined;
  crc32c: string | undefined;
  // Hex SHA-256 of the bytes, for tests; not part of the GCS resource.
  sha256: string | undefined;
  retention: GcsRetention | undefined;
};

export type GcsSessionState = 'open' | 'finalized' | 'cancelled' | 'failed';

// An upload session, as the inspection helpers report it.
export type GcsSessionInfo = { id: string; bucket: string; name: string; state: GcsSessionState; persisted: number; streaming: boolean };

// One request as received, for tests that assert how the client talks.
export type GcsRequestRecord = {
  method: string;
  path: string;
  query: Record<string, string>;
  contentRange: string | undefined;
  contentLength: string | undefined;
  chunked: boolean;
  authorized: boolean;
};

// A fault to answer instead of serving: `status` with a GCS-style JSON error, for `times` matching requests.
export type GcsFault = { status: number; times?: number; when?: (request: GcsRequestRecord) => boolean; message?: string };

// What a test gets: the endpoint, inspection helpers and fault injection.
export type GcsServer = {
  // e.g. http://127.0.0.1:41234 — give it to the client as apiEndpoint.
  readonly url: string;
  readonly requests: readonly GcsRequestRecord[];
  objects(bucket?: string): GcsObjectInfo[];
  sessions(): GcsSessionInfo[];
  openSessions(): GcsSessionInfo[];
  cancelledCount(): number;
  addBucket(name: string): void;
  inject(fault: GcsFault): void;
  clearFaults(): void;
  // Stop reading upload bodies (TCP back-pressure reaches the client) until the returned function runs.
  pauseUploads(): () => void;
  close(): Promise<void>;
};

type Hashes = { md5: Hash; sha256: Hash; crc32c: CRC32C | undefined; upTo: number };

type StoredObject = GcsObjectInfo & { path: string | undefined; created: string };

type Session = {
  id: string;
  bucket: string;
  name: string;
  contentType: string;
  storageClass: string;
  metadata: Record<string, string>;
  retention: GcsRetention | undefined;
  declaredSize: number | undefined;
  ifGenerationMatch: string | undefined;
  state: GcsSessionState;
  // Bytes committed; a multiple of 256 KiB until the session is finalized.
  persisted: number;
  // Bytes written so far by the request in flight (≥ persisted).
  written: number;
  path: string | undefined;
  file: FileHandle | undefined;
  hashes: Hashes | undefined;
  streaming: { request: IncomingMessage; response: ServerResponse } | undefined;
  object: StoredObject | undefined;
  failure: { status: number; message: string; reason: string } | undefined;
};

type Range =
  | { kind: 'status'; total: number | '*' }
  | { kind: 'chunk'; first: number; last: number; total: number | '*' }
  | { kind: 'open'; first: number; total: number | '*' };

class HttpFailure extends Error {
  readonly status: number;
  readonly reason: string;
  constructor(status: number, message: string, reason = 'invalid') {
    super(message);
    this.status = status;
    this.reason = reason;
  }
}

// Starts a server on a free 127.0.0.1 port with the given buckets.
export async function startGcsServer(options: GcsServerOptions): Promise<GcsServer> {
  const keepData = options.keepData ?? true;
  const withHashes = options.hashes ?? true;
  const withCrc32c = withHashes && (options.crc32c ?? true);
  const dir = await mkdtemp(join(tmpdir(), 'gcs-server-'));
  await mkdir(join(dir, 'sessions'));
  await mkdir(join(dir, 'objects'));
  const buckets = new Set(options.buckets);
  const retentionBuckets = new Set(options.retentionBuckets ?? []);
  const objects = new Map<string, StoredObject>();
  const sessions = new Map<string, Session>();
  const requests: GcsRequestRecord[] = [];
  let faults: GcsFault[] = [];
  let paused: Promise<void> | undefined;
  let cancelled = 0;
  let generationCounter = 0;
  let origin = '';

  const objectKey = (bucket: string, name: string) => `${bucket}\n${name}`;
  const nextGeneration = () => String(Date.now() * 1000 + (generationCounter++ % 1000));

  const server: Server = createServer((request, response) => {
    handle(request, response).catch((error: unknown) => {
      if (!response.headersSent) {
        const failure = error instanceof HttpFailure ? error : new HttpFailure(500, `test server bug: ${String(error)}`, 'backendError');
        sendError(response, failure.status, failure.message, failure.reason);
        finishEarly(request, response);
      } else {
        response.destroy();
      }
    });
  });

  async function handle(request: IncomingMessage, response: ServerResponse): Promise<void> {
    const url = new URL(request.url ?? '/', origin);
    const query = Object.fromEntries(url.searchParams);
    const isSession = url.pathname.startsWith('/upload/') && query.upload_id !== undefined;
    const authorization = request.headers.authorization;
    const authorized = options.token === undefined || isSession || authorization === `Bearer ${options.token}`;
    const record: GcsRequestRecord = {
      method: request.method ?? 'GET',
      path: url.pathname,
      query,
      contentRange: request.headers['content-range'],
      contentLength: request.headers['content-length'],
      chunked: /chunked/i.test(request.headers['transfer-encoding'] ?? ''),
      authorized,
    };
    requests.push(record);

    const fault = faults.find((candidate) => (candidate.times ?? 1) > 0 && (candidate.when?.(record) ?? true));
    if (fault) {
      fault.times = (fault.times ?? 1) - 1;
      faults = faults.filter((candidate) => (candidate.times ?? 1) > 0);
      sendError(response, fault.status, fault.message ?? `injected ${fault.status}`, fault.status >= 500 ? 'backendError' : 'injected');
      finishEarly(request, response);
      return;
    }
    if (!authorized) {
      throw new HttpFailure(401, authorization ? 'Invalid Credentials' : 'Anonymous caller does not have storage access to the Google Cloud Storage bucket.', 'required');
    }

    const upload = /^\/upload\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    if (upload) {
      const bucket = decodeURIComponent(upload[1] ?? '');
      if (isSession) return await sessionRequest(request, response, bucket, query.upload_id ?? '');
      if (request.method !== 'POST') throw new HttpFailure(405, 'Method not allowed on the upload endpoint');
      if (query.uploadType !== 'resumable') throw new HttpFailure(501, `uploadType=${query.uploadType ?? ''} is not implemented by this test server`, 'notImplemented');
      return await initiate(request, response, bucket, query);
    }
    const bucketPath = /^\/storage\/v1\/b\/([^/]+)$/.exec(url.pathname);
    if (bucketPath && request.method === 'GET') {
      const bucket = requireBucket(decodeURIComponent(bucketPath[1] ?? ''));
      return sendJson(response, 200, { kind: 'storage#bucket', id: bucket, name: bucket, storageClass: 'STANDARD', location: 'US' });
    }
    const list = /^\/storage\/v1\/b\/([^/]+)\/o$/.exec(url.pathname);
    if (list && request.method === 'GET') {
      const bucket = requireBucket(decodeURIComponent(list[1] ?? ''));
      const prefix = query.prefix ?? '';
      const items = [...objects.values()]
        .filter((object) => object.bucket === bucket && object.name.startsWith(prefix))
        .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
        .map(resource);
      return sendJson(response, 200, { kind: 'storage#objects', items });
    }
    const object = /^\/(?:download\/)?storage\/v1\/b\/([^/]+)\/o\/(.+)$/.exec(url.pathname);
    if (object) {
      const bucket = requireBucket(decodeURIComponent(object[1] ?? ''));
      const name = decodeURIComponent(object[2] ?? '');
      const stored = objects.get(objectKey(bucket, name));
      if (!stored) throw new HttpFailure(404, `No such object: ${bucket}/${name}`, 'notFound');
      checkGeneration(stored, query.ifGenerationMatch);
      if (request.method === 'GET' && query.alt === 'media') return await sendMedia(response, stored);
      if (request.method === 'GET') return sendJson(response, 200, resource(stored));
      if (request.method === 'DELETE') {
        objects.delete(objectKey(bucket, name));
        if (stored.path) await rm(stored.path, { force: true });
        response.writeHead(204).end();
        return;
      }
      throw new HttpFailure(405, `${request.method ?? ''} on an object is not implemented by this test server`);
    }
    throw new HttpFailure(404, `Not Found: ${url.pathname}`, 'notFound');
  }

  function requireBucket(bucket: string): string {
    if (!buckets.has(bucket)) throw new HttpFailure(404, 'The specified bucket does not exist.', 'notFound');
    return bucket;
  }

  // Object Retention Lock: only in buckets that have it, with a valid mode and a future time.
  function checkRetention(bucket: string, value: unknown): GcsRetention {
    if (!retentionBuckets.has(bucket)) throw new HttpFailure(400, 'Object retention is not enabled for this bucket; retention cannot be set on its objects.', 'invalid');
    const { mode, retainUntilTime } = (typeof value === 'object' && value !== null ? value : {}) as Record<string, unknown>;
    if (mode !== 'Unlocked' && mode !== 'Locked') throw new HttpFailure(400, `Invalid argument: retention.mode ${String(mode)}`, 'invalid');
    const until = typeof retainUntilTime === 'string' && RFC3339.test(retainUntilTime) ? Date.parse(retainUntilTime) : Number.NaN;
    if (Number.isNaN(until) || until <= Date.now() || until > Date.now() + MAX_RETENTION_MS) {
      throw new HttpFailure(400, `Invalid argument: retention.retainUntilTime ${String(retainUntilTime)}`, 'invalid');
    }
    return { mode, retainUntilTime: String(retainUntilTime) };
  }

  function checkGeneration(stored: StoredObject | undefined, expected: string | undefined): void {
    if (expected === undefined) return;
    const holds = expected === '0' ? stored === undefined : stored?.generation === expected;
    if (!holds) throw new HttpFailure(412, 'At least one of the pre-conditions you specified did not hold.', 'conditionNotMet');
  }

  async function initiate(request: IncomingMessage, response: ServerResponse, rawBucket: string, query: Record<string, string>): Promise<void> {
    const bucket = requireBucket(rawBucket);
    const text = (await readSmallBody(request)).toString('utf8');
    let body: Record<string, unknown> = {};
    if (text.trim() !== '') {
      try {
        const parsed: unknown = JSON.parse(text);
        if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
        body = parsed as Record<string, unknown>;
      } catch {
        throw new HttpFailure(400, 'Parse Error', 'parseError');
      }
    }
    const name = query.name ?? (typeof body.name === 'string' ? body.name : undefined);
    if (name === undefined || name === '') throw new HttpFailure(400, 'Required', 'required');
    if (Buffer.byteLength(name) > MAX_NAME_BYTES || /[\r\n]/.test(name)) throw new HttpFailure(400, 'The specified object name is not valid.', 'invalid');
    const storageClass = typeof body.storageClass === 'string' ? body.storageClass : 'STANDARD';
    if (!STORAGE_CLASSES.has(storageClass)) throw new HttpFailure(400, `Invalid argument: storageClass ${storageClass}`, 'invalid');
    const metadata: Record<string, string> = {};
    if (body.metadata !== undefined) {
      if (typeof body.metadata !== 'object' || body.metadata === null) throw new HttpFailure(400, 'Invalid argument: metadata', 'invalid');
      for (const [key, value] of Object.entries(body.metadata)) metadata[key] = String(value);
    }
    const retention = body.retention === undefined ? undefined : checkRetention(bucket, body.retention);
    const declaredHeader = request.headers['x-upload-content-length'];
    const declaredSize = declaredHeader === undefined ? undefined : Number(declaredHeader);
    if (declaredSize !== undefined && (!Number.isSafeInteger(declaredSize) || declaredSize < 0)) throw new HttpFailure(400, 'Invalid X-Upload-Content-Length', 'invalid');
    const ifGenerationMatch = query.ifGenerationMatch;
    if (ifGenerationMatch !== undefined && !/^\d+$/.test(ifGenerationMatch)) throw new HttpFailure(400, 'Invalid argument: ifGenerationMatch', 'invalid');
    checkGeneration(objects.get(objectKey(bucket, name)), ifGenerationMatch);

    const contentType = typeof body.contentType === 'string' ? body.contentType : (headerValue(request.headers['x-upload-content-type']) ?? 'application/octet-stream');
    const id = randomBytes(16).toString('hex');
    const path = keepData ? join(dir, 'sessions', id) : undefined;
    const session: Session = {
      id, bucket, name, contentType, storageClass, metadata, retention, declaredSize, ifGenerationMatch,
      state: 'open', persisted: 0, written: 0, path,
      file: path ? await open(path, 'w+') : undefined,
      hashes: withHashes ? newHashes() : undefined,
      streaming: undefined, object: undefined, failure: undefined,
    };
    sessions.set(id, session);
    const location = `${origin}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
    response.writeHead(200, { Location: location, 'X-GUploader-UploadID': id, 'Content-Length': '0' }).end();
  }

  async function sessionRequest(request: IncomingMessage, response: ServerResponse, bucket: string, id: string): Promise<void> {
    const session = sessions.get(id);
    if (!session || session.bucket !== bucket) throw new HttpFailure(404, 'No such upload session.', 'notFound');
    if (request.method === 'DELETE') return await cancel(session, request, response);
    if (request.method !== 'PUT' && request.method !== 'POST') throw new HttpFailure(405, 'Method not allowed on a session URI');
    if (session.state === 'cancelled') return sendCancelled(request, response);
    if (session.state === 'failed' && session.failure) throw new HttpFailure(session.failure.status, session.failure.message, session.failure.reason);
    const range = parseContentRange(request.headers['content-range']);
    if (session.state === 'finalized' && session.object) {
      await drain(request);
      return sendJson(response, 200, resource(session.object));
    }

    if (range.kind === 'status') {
      if ((await readSmallBody(request)).length > 0) throw new HttpFailure(400, 'A status query has no body', 'invalid');
      if (session.streaming) return sendIncomplete(response, session);
      if (range.total !== '*' && range.total === session.persisted) return await finalize(session, response);
      if (range.total !== '*' && range.total < session.persisted) throw new HttpFailure(400, 'The total is smaller than the bytes already persisted', 'invalid');
      return sendIncomplete(response, session);
    }

    if (session.streaming) throw new HttpFailure(409, 'Another request is writing to this upload session', 'conflict');
    const first = range.kind === 'chunk' || range.kind === 'open' ? range.first : 0;
    const total = range.kind === 'chunk' || range.kind === 'open' ? range.total : '*';
    if (first > session.persisted) {
      // GCS answers a gap with a bare text/plain 503 (clients sniff the content type to fail fast).
      const message = `Invalid request.  According to the Content-Range header, the upload offset is ${first} byte(s), which exceeds already uploaded size of ${session.persisted} byte(s).`;
      response.writeHead(503, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(message) }).end(message);
      finishEarly(request, response);
      return;
    }
    if (total !== '*' && session.declaredSize !== undefined && total !== session.declaredSize) {
      throw new HttpFailure(400, `The total size ${total} differs from X-Upload-Content-Length ${session.declaredSize}`, 'invalid');
    }
    const declaredLength = request.headers['content-length'] === undefined ? undefined : Number(request.headers['content-length']);
    if (range.kind === 'chunk') {
      const length = range.last - range.first + 1;
      if (total !== '*' && range.last >= total) throw new HttpFailure(400, `Content-Range end ${range.last} is past the total ${total}`, 'invalid');
      if (declaredLength !== undefined && declaredLength !== length) throw new HttpFailure(400, `Content-Length ${declaredLength} does not match Content-Range ${length}`, 'invalid');
      const final = total !== '*' && range.last + 1 === total;
      if (!final && length < GCS_CHUNK_UNIT) throw badChunkSize(length);
    }

    session.streaming = { request, response };
    session.written = session.persisted;
    let received = 0;
    let completed = false;
    try {
      let position = first;
      for await (const piece of request as AsyncIterable<Buffer>) {
        if (paused) await paused;
        if (session.state !== 'open') break;
        received += piece.length;
        let data = piece;
        if (position < session.written) {
          const skip = Math.min(data.length, session.written - position);
          data = data.subarray(skip);
          position += skip;
        }
        if (data.length > 0) {
          await writeAt(session, data, position);
          position += data.length;
          session.written = position;
        }
      }
      completed = session.state === 'open';
    } catch {
      // The client went away mid-body: keep what arrived, in whole 256 KiB units, and never finalize.
      completed = false;
    } finally {
      session.streaming = undefined;
    }
    if (session.state !== 'open') return;
    if (!completed) {
      await commit(session, roundDown(session.written));
      return;
    }

    const end = first + received;
    if (range.kind === 'chunk') {
      const length = range.last - range.first + 1;
      if (received !== length) {
        await commit(session, roundDown(session.written));
        throw new HttpFailure(400, `Received ${received} bytes, but Content-Range announced ${length}`, 'invalid');
      }
      if (total !== '*' && end === total) return await commitAndFinalize(session, end, response);
      if (received < GCS_CHUNK_UNIT) {
        await commit(session, session.persisted);
        throw badChunkSize(received);
      }
      await commit(session, Math.max(session.persisted, roundDown(end)));
      return sendIncomplete(response, session);
    }
    // `bytes A-*/TOTAL` or no Content-Range: the request carries the rest of the object.
    if (total !== '*' && end !== total) {
      await commit(session, roundDown(session.written));
      throw new HttpFailure(400, `Received ${end} bytes in total, but Content-Range announced ${total}`, 'invalid');
    }
    return await commitAndFinalize(session, end, response);
  }

  async function cancel(session: Session, request: IncomingMessage, response: ServerResponse): Promise<void> {
    await drain(request);
    if (session.state === 'finalized') throw new HttpFailure(400, 'The upload is already complete', 'invalid');
    if (session.state === 'open' || session.state === 'failed') {
      session.state = 'cancelled';
      cancelled += 1;
      const streaming = session.streaming;
      if (streaming && !streaming.response.headersSent) sendCancelled(streaming.request, streaming.response, true);
      await discardData(session);
    }
    sendCancelled(request, response);
  }

  function sendCancelled(request: IncomingMessage, response: ServerResponse, hangUp = false): void {
    response.statusMessage = 'Client Closed Request';
    sendError(response, 499, 'The upload session was cancelled.', 'cancelled');
    if (hangUp) {
      // The body will never be read: end the request and its connection once the answer is out. (A
      // request whose response has finished is no longer aborted by Node when its socket closes.)
      response.once('close', () => {
        request.destroy();
        request.socket.destroy();
      });
    } else {
      finishEarly(request, response);
    }
  }

  async function writeAt(session: Session, data: Buffer, position: number): Promise<void> {
    if (session.file) await session.file.write(data, 0, data.length, position);
    const hashes = session.hashes;
    if (hashes && hashes.upTo === position) {
      hashes.md5.update(data);
      hashes.sha256.update(data);
      hashes.crc32c?.update(data);
      hashes.upTo += data.length;
    } else {
      session.hashes = undefined;
    }
  }

  async function commit(session: Session, persisted: number): Promise<void> {
    session.persisted = Math.max(session.persisted, Math.min(persisted, session.written));
    session.written = session.persisted;
    if (session.file) await session.file.truncate(session.persisted);
    if (session.hashes && session.hashes.upTo !== session.persisted) session.hashes = undefined;
  }

  async function commitAndFinalize(session: Session, size: number, response: ServerResponse): Promise<void> {
    session.persisted = size;
    session.written = size;
    await finalize(session, response);
  }

  async function finalize(session: Session, response: ServerResponse): Promise<void> {
    const key = objectKey(session.bucket, session.name);
    const existing = objects.get(key);
    try {
      checkGeneration(existing, session.ifGenerationMatch);
    } catch (error) {
      const failure = error as HttpFailure;
      session.state = 'failed';
      session.failure = { status: failure.status, message: failure.message, reason: failure.reason };
      await discardData(session);
      throw failure;
    }
    if (session.declaredSize !== undefined && session.declaredSize !== session.persisted) {
      throw new HttpFailure(400, `Upload ended at ${session.persisted} bytes, but X-Upload-Content-Length was ${session.declaredSize}`, 'invalid');
    }
    const digests = withHashes ? await digestsOf(session) : { md5Hash: undefined, crc32c: undefined, sha256: undefined };
    let path: string | undefined;
    if (session.file && session.path) {
      await session.file.close();
      session.file = undefined;
      path = join(dir, 'objects', session.id);
      await rename(session.path, path);
    }
    if (existing?.path) await rm(existing.path, { force: true });
    const stored: StoredObject = {
      bucket: session.bucket,
      name: session.name,
      size: session.persisted,
      generation: nextGeneration(),
      contentType: session.contentType,
      storageClass: session.storageClass,
      metadata: session.metadata,
      retention: session.retention,
      ...digests,
      path,
      created: new Date().toISOString(),
    };
    objects.set(key, stored);
    session.state = 'finalized';
    session.object = stored;
    sendJson(response, 200, resource(stored));
  }

  async function digestsOf(session: Session): Promise<{ md5Hash: string | undefined; crc32c: string | undefined; sha256: string | undefined }> {
    let hashes = session.hashes;
    if ((!hashes || hashes.upTo !== session.persisted) && session.file) {
      hashes = newHashes();
      for await (const piece of session.file.createReadStream({ start: 0, autoClose: false }) as AsyncIterable<Buffer>) {
        hashes.md5.update(piece);
        hashes.sha256.update(piece);
        hashes.crc32c?.update(piece);
        hashes.upTo += piece.length;
      }
    }
    if (!hashes || hashes.upTo !== session.persisted) return { md5Hash: undefined, crc32c: undefined, sha256: undefined };
    return { md5Hash: hashes.md5.digest('base64'), crc32c: hashes.crc32c?.toString(), sha256: hashes.sha256.digest('hex') };
  }

  function newHashes(): Hashes {
    return { md5: createHash('md5'), sha256: createHash('sha256'), crc32c: withCrc32c ? new CRC32C() : undefined, upTo: 0 };
  }

  async function discardData(session: Session): Promise<void> {
    const file = session.file;
    session.file = undefined;
    session.hashes = undefined;
    await file?.close();
    if (session.path) await rm(session.path, { force: true });
  }

  function resource(object: StoredObject): Record<string, unknown> {
    const encodedName = encodeURIComponent(object.name);
    return {
      kind: 'storage#object',
      id: `${object.bucket}/${object.name}/${object.generation}`,
      selfLink: `${origin}/storage/v1/b/${object.bucket}/o/${encodedName}`,
      mediaLink: `${origin}/download/storage/v1/b/${object.bucket}/o/${encodedName}?generation=${object.generation}&alt=media`,
      name: object.name,
      bucket: object.bucket,
      generation: object.generation,
      metageneration: '1',
      contentType: object.contentType,
      storageClass: object.storageClass,
      size: String(object.size),
      ...(object.md5Hash !== undefined && { md5Hash: object.md5Hash }),
      ...(object.crc32c !== undefined && { crc32c: object.crc32c }),
      etag: object.generation,
      timeCreated: object.created,
      updated: object.created,
      ...(Object.keys(object.metadata).length > 0 && { metadata: object.metadata }),
      ...(object.retention !== undefined && { retention: object.retention }),
    };
  }

  async function sendMedia(response: ServerResponse, object: StoredObject): Promise<void> {
    if (!object.path) throw new HttpFailure(410, 'This test server was started with keepData: false', 'gone');
    const hash = [object.crc32c && `crc32c=${object.crc32c}`, object.md5Hash && `md5=${object.md5Hash}`].filter(Boolean).join(',');
    response.writeHead(200, {
      'Content-Type': object.contentType,
      'Content-Length': object.size,
      'x-goog-generation': object.generation,
      'x-goog-metageneration': '1',
      'x-goog-stored-content-encoding': 'identity',
      'x-goog-stored-content-length': object.size,
      ...(hash && { 'x-goog-hash': hash }),
    });
    await pipeline(createReadStream(object.path), response);
  }

  function sendIncomplete(response: ServerResponse, session: Session): void {
    response.statusMessage = 'Resume Incomplete';
    response.writeHead(308, { 'Content-Length': '0', ...(session.persisted > 0 && { Range: `bytes=0-${session.persisted - 1}` }) }).end();
  }

  // Uploads in tests may stream for minutes; Node's default 300 s request timeout would cut them.
  server.requestTimeout = 0;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: '127.0.0.1', port: 0 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;

  const info = (session: Session): GcsSessionInfo => ({
    id: session.id,
    bucket: session.bucket,
    name: session.name,
    state: session.state,
    persisted: session.persisted,
    streaming: session.streaming !== undefined,
  });

  return {
    url: origin,
    requests,
    objects: (bucket) => [...objects.values()].filter((object) => bucket === undefined || object.bucket === bucket).map(objectInfo),
    sessions: () => [...sessions.values()].map(info),
    openSessions: () => [...sessions.values()].filter((session) => session.state === 'open').map(info),
    cancelledCount: () => cancelled,
    addBucket: (name) => {
      buckets.add(name);
    },
    inject: (fault) => {
      faults.push({ ...fault });
    },
    clearFaults: () => {
      faults = [];
    },
    pauseUploads: () => {
      let resume = () => {};
      paused = new Promise<void>((resolve) => {
        resume = () => {
          paused = undefined;
          resolve();
        };
      });
      return resume;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      for (const session of sessions.values()) await session.file?.close().catch(() => undefined);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

function objectInfo(object: StoredObject): GcsObjectInfo {
  const { bucket, name, size, generation, contentType, storageClass, metadata, md5Hash, crc32c, sha256, retention } = object;
  return { bucket, name, size, generation, contentType, storageClass, metadata: { ...metadata }, md5Hash, crc32c, sha256, retention };
}

function parseContentRange(header: string | undefined): Range | { kind: 'whole' } {
  if (header === undefined) return { kind: 'whole' };
  const status = /^bytes \*\/(\*|\d+)$/.exec(header.trim());
  if (status) return { kind: 'status', total: parseTotal(status[1] ?? '*') };
  const open = /^bytes (\d+)-\*\/(\*|\d+)$/.exec(header.trim());
  if (open) return { kind: 'open', first: Number(open[1]), total: parseTotal(open[2] ?? '*') };
  const chunk = /^bytes (\d+)-(\d+)\/(\*|\d+)$/.exec(header.trim());
  if (chunk) {
    const first = Number(chunk[1]);
    const last = Number(chunk[2]);
    if (last < first) throw new HttpFailure(400, `Invalid Content-Range: ${header}`, 'invalid');
    return { kind: 'chunk', first, last, total: parseTotal(chunk[3] ?? '*') };
  }
  throw new HttpFailure(400, `Invalid Content-Range: ${header}`, 'invalid');
}

function parseTotal(text: string): number | '*' {
  return text === '*' ? '*' : Number(text);
}

function roundDown(bytes: number): number {
  return Math.floor(bytes / GCS_CHUNK_UNIT) * GCS_CHUNK_UNIT;
}

function badChunkSize(received: number): HttpFailure {
  return new HttpFailure(
    400,
    `Invalid request.  The number of bytes uploaded is required to be equal or greater than ${GCS_CHUNK_UNIT}, except for the final request (it's recommended to be the exact multiple of ${GCS_CHUNK_UNIT}).  The received request contained ${received} bytes, which does not meet this requirement.`,
    'invalid',
  );
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

async function readSmallBody(request: IncomingMessage): Promise<Buffer> {
  const pieces: Buffer[] = [];
  let size = 0;
  for await (const piece of request as AsyncIterable<Buffer>) {
    size += piece.length;
    if (size > MAX_METADATA_BYTES) throw new HttpFailure(400, 'Request body too large', 'invalid');
    pieces.push(piece);
  }
  return Buffer.concat(pieces);
}

async function drain(request: IncomingMessage): Promise<void> {
  if (request.readableEnded) return;
  request.resume();
  await finished(request);
}

// After answering before the body was read: discard the rest, so that the client sees the answer
// instead of a reset and the connection stays usable.
function finishEarly(request: IncomingMessage, response: ServerResponse): void {
  if (request.readableEnded) return;
  response.once('finish', () => request.resume());
}

function sendJson(response: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  response.writeHead(status, { 'Content-Type': 'application/json; charset=UTF-8', 'Content-Length': Buffer.byteLength(text) }).end(text);
}

function sendError(response: ServerResponse, status: number, message: string, reason: string): void {
  sendJson(response, status, { error: { code: status, message, errors: [{ domain: 'global', reason, message }] } });
}
