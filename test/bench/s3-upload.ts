// Benchmark (not a test): a synthetic dump into s3rver at default settings, measured in a child process
// whose peak RSS (VmHWM) is read from /proc:
//   target — a generated stream straight through the s3 target (its memory alone);
//   job    — the bundled job (dist/main.js, `npm run build` first) with the fake pg_dump writing the
//            bytes and BACKUP_COMPRESSION=none, so that every byte reaches the store.
//
//   node_modules/.bin/node test/bench/s3-upload.ts [--mode target|job|both] [--size 2GiB] [--chunk 64KiB]
//                          [--size-hint 50GiB] [--part-size 8MiB] [--concurrency 2]
//
// Without options: both modes, 2 GiB, the defaults (no size hint: 8 MiB parts × 2); the target mode's
// stream comes in 64 KiB chunks of incompressible bytes, about what a pipe from zstd hands on.
// s3rver runs in this (parent) process and is reached directly, without the tests' fault front.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { HeadObjectCommand, ListObjectsV2Command } from '@aws-sdk/client-s3';
import { cleanEnv } from 'envalid';
import { pino } from 'pino';
import { planParts, s3 } from '../../src/storage/s3.ts';
import { formatBytes, parseSize } from '../../src/units.ts';
import { BUNDLE, fakeToolDir, runJob } from '../support/job.ts';
import { startS3Server, type S3TestServer } from '../support/s3-server.ts';

const NODE = new URL('../../node_modules/.bin/node', import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;
const BUCKET = 'bench';

type ChildReport = { bytes: number; ms: number; baselineRss: number; peakRss: number };
type ChildSpec = { endpoint: string; credentials: { accessKeyId: string; secretAccessKey: string }; size: number; chunk: number; sizeHint?: number; vars: Record<string, string> };

const { values } = parseArgs({
  options: {
    child: { type: 'string' },
    mode: { type: 'string', default: 'both' },
    size: { type: 'string', default: '2GiB' },
    chunk: { type: 'string', default: '64KiB' },
    'size-hint': { type: 'string' },
    'part-size': { type: 'string' },
    concurrency: { type: 'string' },
  },
});

async function procStatus(field: 'VmHWM' | 'VmRSS'): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8');
  return Number(new RegExp(`${field}:\\s+(\\d+) kB`).exec(status)?.[1] ?? 0) * 1024;
}

// `total` bytes that do not compress (xorshift), in fresh `chunk`-sized buffers like a pipe delivers.
function synthetic(total: number, chunk: number): Readable {
  const pool = Buffer.alloc(8 * 1024 * 1024);
  let state = 0x9e3779b9;
  for (let i = 0; i < pool.length; i += 4) {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    pool.writeUInt32LE(state >>> 0, i);
  }
  let sent = 0;
  let offset = 0;
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const length = Math.min(chunk, total - sent);
      // A stride that is not a divisor of the pool: consecutive parts never repeat byte for byte.
      offset = (offset + 7919) % (pool.length - length);
      sent += length;
      this.push(Buffer.from(pool.subarray(offset, offset + length)));
    },
  });
}

// In the child: one upload through the target with the given variables, then a JSON report.
async function child(spec: ChildSpec): Promise<void> {
  const settings = cleanEnv({ STORAGE_ACCESS_KEY_ID: spec.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: spec.credentials.secretAccessKey, ...spec.vars }, s3.env);
  const target = s3.open({ bucket: BUCKET, endpoint: spec.endpoint, region: undefined }, settings);
  const log = pino({ level: 'silent' });
  // Load the SDK and open a connection with a tiny upload first, so that the baseline includes them.
  await target.upload({
    key: 'warm-up', body: Readable.from([Buffer.alloc(10)]), signal: new AbortController().signal,
    contentType: 'application/octet-stream', metadata: {}, sizeHint: undefined, log,
  });
  const baselineRss = await procStatus('VmRSS');
  const started = performance.now();
  await target.upload({
    key: 'bench.bin', body: synthetic(spec.size, spec.chunk), signal: new AbortController().signal,
    contentType: 'application/octet-stream', metadata: { 'planb-run-id': 'bench' }, sizeHint: spec.sizeHint, log,
  });
  const report: ChildReport = { bytes: spec.size, ms: performance.now() - started, baselineRss, peakRss: await procStatus('VmHWM') };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

type Options = { size: number; chunk: number; sizeHint: number | undefined; vars: Record<string, string> };

// A generated stream through the target in a child process.
async function measureTarget(server: S3TestServer, options: Options): Promise<Record<string, unknown>> {
  const spec: ChildSpec = { endpoint: server.directEndpoint, credentials: server.credentials, ...options };
  const run = spawn(NODE, [SELF, '--child', JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  run.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
  const code = await new Promise<number | null>((resolve) => run.once('close', resolve));
  if (code !== 0) throw new Error(`the uploading child exited with ${code}`);
  const report = JSON.parse(output.trim()) as ChildReport;
  await expectObject(server, 'bench.bin', options.size);
  return {
    mode: 'target',
    seconds: Number((report.ms / 1000).toFixed(2)),
    throughput: `${(options.size / 1e6 / (report.ms / 1000)).toFixed(0)} MB/s`,
    baselineRss: formatBytes(report.baselineRss),
    peakRss: formatBytes(report.peakRss),
  };
}

// The bundled job with the fake pg_dump writing `size` bytes, uploading to s3rver.
async function measureJob(server: S3TestServer, options: Options): Promise<Record<string, unknown>> {
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing; run npm run build first`);
  const bin = await fakeToolDir(['pg_dump']);
  try {
    const result = await runJob({
      PATH: `${bin}:${process.env.PATH ?? ''}`,
      DB_TYPE: 'postgresql', DB_HOST: '127.0.0.1', DB_NAME: 'bench', DB_EXTRA_ARGS: `--fake-bytes=${options.size}`,
      BACKUP_COMPRESSION: 'none',
      ...(options.sizeHint !== undefined && { BACKUP_EXPECTED_SIZE: String(options.sizeHint) }),
      STORAGE_TYPE: 's3', STORAGE_BUCKET: BUCKET, STORAGE_ENDPOINT: server.directEndpoint, BACKUP_PATH: 'job/',
      STORAGE_ACCESS_KEY_ID: server.credentials.accessKeyId, STORAGE_SECRET_ACCESS_KEY: server.credentials.secretAccessKey,
      LOG_LEVEL: 'warn',
      ...options.vars,
    });
    if (result.code !== 0) throw new Error(`the job exited with ${result.code}: ${result.stdout.slice(-2000)}${result.stderr.slice(-2000)}`);
    const listing = await server.client.send(new ListObjectsV2Command({ Bucket: BUCKET, Prefix: 'job/' }));
    const keys = (listing.Contents ?? []).map((object) => object.Key ?? '');
    if (keys.length !== 1 || keys[0] === undefined) throw new Error(`expected one object, found ${keys.join(', ')}`);
    await expectObject(server, keys[0], options.size);
    return {
      mode: 'job',
      seconds: Number((result.ms / 1000).toFixed(2)),
      throughput: `${(options.size / 1e6 / (result.ms / 1000)).toFixed(0)} MB/s (whole run, start-up included)`,
      peakRss: formatBytes(result.peakRss),
    };
  } finally {
    await rm(bin, { recursive: true, force: true });
  }
}

async function expectObject(server: S3TestServer, key: string, size: number): Promise<void> {
  const head = await server.client.send(new HeadObjectCommand({ Bucket: BUCKET, Key: key }));
  if (head.ContentLength !== size) throw new Error(`s3rver holds ${head.ContentLength} bytes at ${key}, expected ${size}`);
}

async function main(): Promise<void> {
  const options: Options = {
    size: parseSize(values.size) ?? 0,
    chunk: parseSize(values.chunk) ?? 0,
    sizeHint: values['size-hint'] === undefined ? undefined : parseSize(values['size-hint']),
    vars: {
      ...(values['part-size'] && { STORAGE_PART_SIZE: values['part-size'] }),
      ...(values.concurrency && { STORAGE_CONCURRENCY: values.concurrency }),
    },
  };
  const plan = planParts(options.sizeHint, {
    partSize: values['part-size'] === undefined ? undefined : parseSize(values['part-size']),
    concurrency: values.concurrency === undefined ? undefined : Number(values.concurrency),
  });
  const settings = {
    size: formatBytes(options.size),
    partSize: formatBytes(plan.partSize),
    concurrency: plan.concurrency,
    capacity: formatBytes(plan.capacity),
    partBuffers: formatBytes(plan.bufferBytes),
  };
  const modes = values.mode === 'both' ? ['target', 'job'] : [values.mode];
  for (const mode of modes) {
    // A fresh s3rver per measurement, so that one run's gigabytes don't slow the next.
    const server = await startS3Server({ buckets: [BUCKET] });
    try {
      const result = mode === 'job' ? await measureJob(server, options) : await measureTarget(server, options);
      console.log(JSON.stringify({ ...settings, ...(mode === 'target' && { chunk: formatBytes(options.chunk) }), ...result }));
    } finally {
      await server.stop();
    }
  }
}

if (values.child) await child(JSON.parse(values.child) as ChildSpec);
else await main();
