// A throw-away S3 for the tests and the benchmark: s3rver (npm) on 127.0.0.1 in its own temp directory,
// behind a small front on another 127.0.0.1 port that clients talk to. The front
// - makes s3rver as strict as AWS where it is not: `If-None-Match: *` on PutObject and
//   CompleteMultipartUpload answers 412 when the key exists (s3rver ignores the header and overwrites);
// - can answer AbortMultipartUpload the way AWS does (s3rver itself answers 405 and keeps the parts);
// - checks CRC32 checksums the way AWS does (s3rver ignores them): a body whose x-amz-checksum-crc32
//   does not match is refused with 400 BadDigest and a matching one is echoed in the answer; the commit of
//   a multipart upload created with x-amz-checksum-algorithm must list every part's ChecksumCRC32;
// - checks Object Lock the way AWS does (s3rver ignores it): lock headers on PutObject or
//   CreateMultipartUpload into a bucket created without Object Lock answer 400 InvalidRequest, a bad
//   mode or a past date 400 InvalidArgument, and a locked PutObject or part without Content-MD5 or a
//   checksum header 400 InvalidRequest; the lock of each stored object is kept for the test to read;
// - injects faults for chosen requests: an S3 error (403, 503, …) or a request that never gets an answer;
// - records every request, so a test can say what was (not) sent.
// Nothing here listens beyond 127.0.0.1.
import { createRequire } from 'node:module';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { createServer, request as httpRequest, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buffer } from 'node:stream/consumers';
import { pipeline } from 'node:stream/promises';
import type { TestContext } from 'node:test';
import { crc32 } from 'node:zlib';
import { GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';

const HOST = '127.0.0.1' as const;
// s3rver's built-in account; it checks the key id (InvalidAccessKeyId) but not SigV4 signatures.
export const S3RVER_KEY = { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } as const;
export const S3RVER_REGION = 'us-east-1';

// The S3 operation a request is, as far as these tests need to tell them apart.
export type S3Operation =
  | 'PutObject' | 'UploadPart' | 'CreateMultipartUpload' | 'CompleteMultipartUpload' | 'AbortMultipartUpload'
  | 'GetObject' | 'HeadObject' | 'DeleteObject' | 'ListObjects' | 'CreateBucket' | 'Other';

// One request as the front saw it.
export type RecordedRequest = {
  operation: S3Operation;
  method: string;
  bucket: string;
  key: string;
  query: URLSearchParams;
  headers: IncomingMessage['headers'];
  // The status the front or s3rver answered; undefined while pending or when never answered.
  status: number | undefined;
};

// A fault: for requests that `match` (at most `times` of them), answer with an S3 error or never answer.
export type Fault = {
  match: (request: RecordedRequest) => boolean;
  reply: { status: number; code: string; message?: string } | 'stall';
  times?: number;
};

export type S3TestServer = {
  // The front: what the code under test talks to.
  endpoint: string;
  // s3rver itself, bypassing the front (and its faults); what `client` uses.
  directEndpoint: string;
  region: string;
  credentials: { accessKeyId: string; secretAccessKey: string };
  // An SDK client on the direct endpoint, for checking what is stored.
  client: S3Client;
  requests: RecordedRequest[];
  inject(fault: Fault): void;
  clearFaults(): void;
  // The object's bytes, read back with the SDK; undefined when there is no object at the key.
  read(bucket: string, key: string): Promise<Buffer | undefined>;
  // Every key under the prefix (ListObjectsV2, all pages).
  list(bucket: string, prefix: string): Promise<string[]>;
  // Multipart uploads s3rver still keeps (started, neither completed nor aborted).
  pendingUploads(bucket: string): Promise<string[]>;
  // The Object Lock an object was stored with; undefined when it has none (or does not exist).
  retention(bucket: string, key: string): ObjectLock | undefined;
  stop(): Promise<void>;
};

// An object's Object Lock as its creating request set it.
export type ObjectLock = { mode: string; retainUntil: Date };

export type S3ServerOptions = {
  buckets?: readonly string[];
  // Buckets that behave as if created with Object Lock enabled; the others refuse locked writes.
  objectLockBuckets?: readonly string[];
  // Answer AbortMultipartUpload like AWS (204, parts removed) instead of passing it on to s3rver (405).
  implementAbort?: boolean;
};

type S3rverOptions = {
  address: string;
  port: number;
  silent: boolean;
  directory: string;
  configureBuckets: { name: string }[];
};
type S3rverInstance = {
  run(): Promise<AddressInfo>;
  close(): Promise<void>;
  store: { getResourcePath(bucket: string, key: string | undefined, resource: string): string };
};
type S3rverConstructor = new (options: S3rverOptions) => S3rverInstance;

const require = createRequire(import.meta.url);

function loadS3rver(): S3rverConstructor | undefined {
  try {
    return require('s3rver') as S3rverConstructor;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND') return undefined;
    throw error;
  }
}

// True when s3rver is installed; otherwise skips the test loudly, or throws when CI is set.
export function requireS3rver(t: TestContext): boolean {
  if (loadS3rver()) return true;
  const hint = 'run npm ci (s3rver is a devDependency)';
  if (process.env.CI) throw new Error(`s3rver is not installed (CI is set, so this is a failure, not a skip); ${hint}`);
  t.skip(`s3rver is not installed; ${hint}`);
  return false;
}

// Starts s3rver and its front, with the given buckets created.
export async function startS3Server(options: S3ServerOptions = {}): Promise<S3TestServer> {
  const S3rver = loadS3rver();
  if (!S3rver) throw new Error('s3rver is not installed (npm ci)');
  const directory = await mkdtemp(join(tmpdir(), 'planb-s3rver-'));
  let s3rver: S3rverInstance | undefined;
  let front: Server | undefined;
  try {
    s3rver = new S3rver({
      address: HOST,
      port: 0,
      silent: true,
      directory,
      configureBuckets: (options.buckets ?? []).map((name) => ({ name })),
    });
    const direct = await s3rver.run();
    const state = {
      faults: [] as (Fault & { used: number })[],
      requests: [] as RecordedRequest[],
      stalled: new Set<ServerResponse>(),
      checksummed: new Map<string, Map<number, string>>(),
      objectLockBuckets: new Set(options.objectLockBuckets ?? []),
      // bucket/key → the lock of the upload being written there, then of the stored object.
      pendingLocks: new Map<string, ObjectLock>(),
      locks: new Map<string, ObjectLock>(),
    };
    const backend = s3rver;
    front = createServer((req, res) => {
      handle(req, res, { state, backendPort: direct.port, s3rver: backend, implementAbort: options.implementAbort ?? false }).catch((error: unknown) => {
        if (!res.headersSent) sendError(res, 500, 'InternalError', `test front failed: ${String(error)}`);
        else res.destroy();
      });
    });
    const server = front;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, HOST, resolve);
    });
    const port = (server.address() as AddressInfo).port;
    const directEndpoint = `http://${HOST}:${direct.port}`;
    const client = new S3Client({ endpoint: directEndpoint, region: S3RVER_REGION, forcePathStyle: true, credentials: S3RVER_KEY });
    let stopped = false;
    return {
      endpoint: `http://${HOST}:${port}`,
      directEndpoint,
      region: S3RVER_REGION,
      credentials: { ...S3RVER_KEY },
      client,
      requests: state.requests,
      inject: (fault) => state.faults.push({ ...fault, used: 0 }),
      clearFaults: () => {
        state.faults.length = 0;
      },
      read: (bucket, key) => readObject(client, bucket, key),
      list: (bucket, prefix) => listKeys(client, bucket, prefix),
      retention: (bucket, key) => state.locks.get(`${bucket}/${key}`),
      pendingUploads: async (bucket) =>
        readdir(backend.store.getResourcePath(bucket, undefined, 'uploads')).catch((error: unknown) => {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
          throw error;
        }),
      async stop() {
        if (stopped) return;
        stopped = true;
        client.destroy();
        for (const response of state.stalled) response.destroy();
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        await backend.close();
        await rm(directory, { recursive: true, force: true });
      },
    };
  } catch (error) {
    front?.close();
    await s3rver?.close().catch(() => undefined); // it may not have started; the original error matters
    await rm(directory, { recursive: true, force: true });
    throw error;
  }
}

type FrontContext = {
  // checksummed: keys of multipart uploads created with a CRC32 checksum → the checksum of each part received.
  state: {
    faults: (Fault & { used: number })[];
    requests: RecordedRequest[];
    stalled: Set<ServerResponse>;
    checksummed: Map<string, Map<number, string>>;
    objectLockBuckets: Set<string>;
    pendingLocks: Map<string, ObjectLock>;
    locks: Map<string, ObjectLock>;
  };
  backendPort: number;
  s3rver: S3rverInstance;
  implementAbort: boolean;
};

async function handle(req: IncomingMessage, res: ServerResponse, context: FrontContext): Promise<void> {
  const url = new URL(req.url ?? '/', `http://${HOST}`);
  const [bucket = '', ...rest] = url.pathname.slice(1).split('/');
  const key = decodeURIComponent(rest.join('/'));
  const method = req.method ?? 'GET';
  const recorded: RecordedRequest = {
    operation: operationOf(method, key, url.searchParams),
    method,
    bucket: decodeURIComponent(bucket),
    key,
    query: url.searchParams,
    headers: req.headers,
    status: undefined,
  };
  context.state.requests.push(recorded);
  res.once('finish', () => {
    recorded.status = res.statusCode;
    keepLock(recorded, `${recorded.bucket}/${key}`, context.state);
  });

  const fault = context.state.faults.find((candidate) => candidate.used < (candidate.times ?? Infinity) && candidate.match(recorded));
  if (fault) {
    fault.used += 1;
    if (fault.reply === 'stall') {
      // Take the body, never answer: the client sees a request that hangs until it gives up.
      context.state.stalled.add(res);
      res.once('close', () => context.state.stalled.delete(res));
      req.resume();
      return;
    }
    await drain(req);
    sendError(res, fault.reply.status, fault.reply.code, fault.reply.message ?? fault.reply.code, method === 'HEAD');
    return;
  }

  if (req.headers['if-none-match'] === '*' && (recorded.operation === 'PutObject' || recorded.operation === 'CompleteMultipartUpload')) {
    if (await exists(context.backendPort, url.pathname)) {
      await drain(req);
      sendError(res, 412, 'PreconditionFailed', 'At least one of the pre-conditions you specified did not hold');
      return;
    }
  }

  if (recorded.operation === 'AbortMultipartUpload' && context.implementAbort) {
    const uploadDir = join(context.s3rver.store.getResourcePath(recorded.bucket, undefined, 'uploads'), url.searchParams.get('uploadId') ?? '');
    const present = await readdir(uploadDir).then(() => true, () => false);
    if (!present) {
      sendError(res, 404, 'NoSuchUpload', 'The specified upload does not exist.');
      return;
    }
    await rm(uploadDir, { recursive: true, force: true });
    res.writeHead(204).end();
    return;
  }

  const path = `${recorded.bucket}/${key}`;
  const lockRefusal = checkObjectLock(recorded, path, context.state);
  if (lockRefusal !== undefined) {
    await drain(req);
    sendError(res, 400, lockRefusal.code, lockRefusal.message);
    return;
  }
  if (recorded.operation === 'CreateMultipartUpload' && req.headers['x-amz-checksum-algorithm'] !== undefined) {
    if (req.headers['x-amz-checksum-algorithm'] !== 'CRC32') {
      sendError(res, 400, 'InvalidRequest', 'this test front checks only CRC32');
      return;
    }
    context.state.checksummed.set(path, new Map());
  }
  const claimed = req.headers['x-amz-checksum-crc32'];
  if ((recorded.operation === 'UploadPart' || recorded.operation === 'PutObject') && typeof claimed === 'string') {
    const data = await buffer(req);
    const actual = crc32Base64(data);
    if (actual !== claimed) {
      sendError(res, 400, 'BadDigest', `The CRC32 you specified did not match the calculated checksum (${actual}).`);
      return;
    }
    context.state.checksummed.get(path)?.set(Number(url.searchParams.get('partNumber')), actual);
    await forward(req, res, context.backendPort, { body: data, answerHeaders: { 'x-amz-checksum-crc32': actual } });
    return;
  }
  const parts = context.state.checksummed.get(path);
  if (recorded.operation === 'CompleteMultipartUpload' && parts !== undefined) {
    const data = await buffer(req);
    const listed = [...data.toString('utf8').matchAll(/<Part>(.*?)<\/Part>/gs)].map(([, part = '']) => ({
      number: Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(part)?.[1]),
      checksum: /<ChecksumCRC32>([^<]*)<\/ChecksumCRC32>/.exec(part)?.[1],
    }));
    const wrong = listed.find((part) => part.checksum === undefined || part.checksum !== parts.get(part.number));
    if (wrong !== undefined) {
      sendError(res, 400, 'InvalidPart', `part ${wrong.number} is listed without the CRC32 it was uploaded with`);
      return;
    }
    context.state.checksummed.delete(path);
    await forward(req, res, context.backendPort, { body: data, answerHeaders: {} });
    return;
  }

  await forward(req, res, context.backendPort);
}

// AWS's Object Lock rules for the creating request and the parts; records the lock of a write that
// passes them, and keeps it once the object is stored. Returns the refusal, if any.
function checkObjectLock(request: RecordedRequest, path: string, state: FrontContext['state']): { code: string; message: string } | undefined {
  const { operation, headers } = request;
  const mode = headers['x-amz-object-lock-mode'];
  const until = headers['x-amz-object-lock-retain-until-date'];
  const checksummed = headers['content-md5'] !== undefined || Object.keys(headers).some((name) => name.startsWith('x-amz-checksum-') && name !== 'x-amz-checksum-algorithm') ||
    /x-amz-checksum-/.test(String(headers['x-amz-trailer'] ?? ''));
  if (operation === 'PutObject' || operation === 'CreateMultipartUpload') {
    state.pendingLocks.delete(path);
    if (mode === undefined && until === undefined) return undefined;
    if (!state.objectLockBuckets.has(request.bucket)) return { code: 'InvalidRequest', message: 'Bucket is missing Object Lock Configuration' };
    const retainUntil = new Date(String(until));
    if ((mode !== 'GOVERNANCE' && mode !== 'COMPLIANCE') || Number.isNaN(retainUntil.getTime())) {
      return { code: 'InvalidArgument', message: 'x-amz-object-lock-mode and x-amz-object-lock-retain-until-date must both be present and valid' };
    }
    if (retainUntil.getTime() <= Date.now()) return { code: 'InvalidArgument', message: 'The retain until date must be in the future!' };
    if (operation === 'PutObject' && !checksummed) {
      return { code: 'InvalidRequest', message: 'Content-MD5 OR x-amz-checksum- HTTP header is required for Put Object requests with Object Lock parameters' };
    }
    state.pendingLocks.set(path, { mode, retainUntil });
  }
  if (operation === 'UploadPart' && state.pendingLocks.has(path) && !checksummed) {
    return { code: 'InvalidRequest', message: 'Content-MD5 OR x-amz-checksum- HTTP header is required for Upload Part requests with Object Lock parameters' };
  }
  return undefined;
}

// Once a write is answered 200, the object it stored keeps the lock its creating request asked for.
function keepLock(request: RecordedRequest, path: string, state: FrontContext['state']): void {
  if (request.operation !== 'PutObject' && request.operation !== 'CompleteMultipartUpload') return;
  const lock = state.pendingLocks.get(path);
  if (lock === undefined || request.status !== 200) return;
  state.locks.set(path, lock);
  state.pendingLocks.delete(path);
}

// A CRC32 as S3 writes it: the four big-endian bytes, base64.
function crc32Base64(data: Buffer): string {
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(crc32(data));
  return bytes.toString('base64');
}

function operationOf(method: string, key: string, query: URLSearchParams): S3Operation {
  if (key === '') {
    if (method === 'PUT') return 'CreateBucket';
    if (method === 'GET') return 'ListObjects';
    return 'Other';
  }
  if (method === 'PUT') return query.has('partNumber') && query.has('uploadId') ? 'UploadPart' : 'PutObject';
  if (method === 'POST') return query.has('uploads') ? 'CreateMultipartUpload' : query.has('uploadId') ? 'CompleteMultipartUpload' : 'Other';
  if (method === 'DELETE') return query.has('uploadId') ? 'AbortMultipartUpload' : 'DeleteObject';
  if (method === 'GET') return 'GetObject';
  if (method === 'HEAD') return 'HeadObject';
  return 'Other';
}

// Passes the request on to s3rver; `read` when the front already consumed the body (to check it).
async function forward(req: IncomingMessage, res: ServerResponse, port: number, read?: { body: Buffer; answerHeaders: Record<string, string> }): Promise<void> {
  const upstream = httpRequest({ host: HOST, port, method: req.method, path: req.url, headers: req.headers });
  const answered = new Promise<IncomingMessage>((resolve, reject) => {
    upstream.once('response', resolve);
    upstream.once('error', reject);
  });
  // s3rver may answer (an error) before it read the whole body: the answer, not the upload, decides.
  // A body that breaks off (the client cancelled) destroys `upstream`, which rejects `answered`.
  if (read === undefined) void pipeline(req, upstream).catch(() => undefined);
  else upstream.end(read.body);
  const answer = await answered;
  res.writeHead(answer.statusCode ?? 502, { ...answer.headers, ...((answer.statusCode ?? 0) < 300 && read?.answerHeaders) });
  await pipeline(answer, res);
}

// Whether s3rver holds an object at the path (an unsigned HEAD: s3rver lets those through).
async function exists(port: number, path: string): Promise<boolean> {
  const answer = await new Promise<IncomingMessage>((resolve, reject) => {
    httpRequest({ host: HOST, port, method: 'HEAD', path }, resolve).once('error', reject).end();
  });
  answer.resume();
  return answer.statusCode === 200;
}

async function drain(req: IncomingMessage): Promise<void> {
  for await (const chunk of req) void chunk;
}

function sendError(res: ServerResponse, status: number, code: string, message: string, headOnly = false): void {
  const body =
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message>` +
    `<RequestId>planb-test-front</RequestId></Error>`;
  res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body) });
  res.end(headOnly ? undefined : body);
}

async function readObject(client: S3Client, bucket: string, key: string): Promise<Buffer | undefined> {
  try {
    const answer = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await answer.Body!.transformToByteArray());
  } catch (error) {
    if ((error as Error).name === 'NoSuchKey') return undefined;
    throw error;
  }
}

async function listKeys(client: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const keys: string[] = [];
  let token: string | undefined;
  do {
    const page = await client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }));
    keys.push(...(page.Contents ?? []).map((object) => object.Key ?? ''));
    token = page.IsTruncated ? page.NextContinuationToken : undefined;
  } while (token !== undefined);
  return keys;
}
