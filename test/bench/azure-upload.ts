// Benchmark (not a test): a synthetic dump into an in-memory azurite at default settings, measured
// twice, each time in a child process whose peak RSS (VmHWM) is read from /proc:
//   target — a generated stream straight through the azure target (its memory alone);
//   job    — the bundled job (dist/main.js, `npm run build` first) with the fake pg_dump writing the
//            bytes and BACKUP_COMPRESSION=none, so that every byte reaches the store.
//
//   node_modules/.bin/node test/bench/azure-upload.ts [--mode target|job|both] [--size 2GiB] [--chunk 64KiB]
//                          [--size-hint 1TiB] [--part-size 8MiB] [--concurrency 5]
//
// Without options: both modes, 2 GiB, the defaults (8 MiB blocks × 5); the target mode's stream comes
// in 64 KiB chunks, about what a pipe from a child process hands on.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { readFile, rm } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { parseArgs } from 'node:util';
import { cleanEnv } from 'envalid';
import { pino } from 'pino';
import { azure, planBlocks } from '../../src/storage/azure.ts';
import { formatBytes, parseSize } from '../../src/units.ts';
import { DEV_ACCOUNT, DEV_KEY, startAzurite, type Azurite } from '../support/azurite.ts';
import { BUNDLE, fakeToolDir, runJob } from '../support/job.ts';

const NODE = new URL('../../node_modules/.bin/node', import.meta.url).pathname;
const SELF = new URL(import.meta.url).pathname;

type ChildReport = { bytes: number; ms: number; baselineRss: number; peakRss: number };

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

async function vmHwm(pid: number | 'self'): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

async function vmRss(): Promise<number> {
  const status = await readFile('/proc/self/status', 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

// A stream of `total` bytes in fresh `chunk`-sized buffers, like a pipe from a compressor.
function synthetic(total: number, chunk: number): Readable {
  const pattern = Buffer.alloc(4 * 1024 * 1024);
  for (let i = 0; i < pattern.length; i += 4) pattern.writeUInt32LE((i * 2654435761) >>> 0, i);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= total) return void this.push(null);
      const length = Math.min(chunk, total - sent);
      const offset = sent % (pattern.length - chunk);
      sent += length;
      this.push(Buffer.from(pattern.subarray(offset, offset + length)));
    },
  });
}

// In the child: one upload through the target with the given variables, then a JSON report.
async function child(spec: { endpoint: string; container: string; size: number; chunk: number; sizeHint?: number; vars: Record<string, string> }): Promise<void> {
  const settings = cleanEnv({ AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY, ...spec.vars }, azure.env);
  const target = azure.open({ bucket: spec.container, endpoint: spec.endpoint, region: undefined }, settings);
  // Load the SDK and open the connection with a tiny upload first, so the baseline includes them.
  await target.upload({
    key: 'warm-up', body: Readable.from([Buffer.alloc(10)]), signal: new AbortController().signal,
    contentType: 'application/octet-stream', metadata: {}, sizeHint: undefined, log: pino({ level: 'silent' }),
  });
  const baselineRss = await vmRss();
  const started = performance.now();
  await target.upload({
    key: 'bench.bin', body: synthetic(spec.size, spec.chunk), signal: new AbortController().signal,
    contentType: 'application/octet-stream', metadata: { 'planb-run-id': 'bench' }, sizeHint: spec.sizeHint, log: pino({ level: 'silent' }),
  });
  const report: ChildReport = { bytes: spec.size, ms: performance.now() - started, baselineRss, peakRss: await vmHwm('self') };
  process.stdout.write(`${JSON.stringify(report)}\n`);
}

type Options = { size: number; chunk: number; sizeHint: number | undefined; vars: Record<string, string> };

// A generated stream through the target in a child process.
async function measureTarget(azurite: Azurite, options: Options): Promise<Record<string, unknown>> {
  const container = await azurite.createContainer('bench-target');
  const spec = { endpoint: azurite.endpoint, container, ...options };
  const run = spawn(NODE, [SELF, '--child', JSON.stringify(spec)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let output = '';
  run.stdout.setEncoding('utf8').on('data', (text: string) => (output += text));
  const code = await new Promise<number | null>((resolve) => run.once('close', resolve));
  if (code !== 0) throw new Error(`the uploading child exited with ${code}`);
  const report = JSON.parse(output.trim()) as ChildReport;
  await expectBlob(azurite, container, 'bench.bin', options.size);
  return {
    mode: 'target',
    seconds: Number((report.ms / 1000).toFixed(2)),
    throughput: `${(options.size / 1e6 / (report.ms / 1000)).toFixed(0)} MB/s`,
    baselineRss: formatBytes(report.baselineRss),
    peakRss: formatBytes(report.peakRss),
  };
}

// The bundled job with the fake pg_dump writing `size` bytes.
async function measureJob(azurite: Azurite, options: Options): Promise<Record<string, unknown>> {
  if (!existsSync(BUNDLE)) throw new Error(`${BUNDLE} is missing; run npm run build first`);
  const container = await azurite.createContainer('bench-job');
  const bin = await fakeToolDir(['pg_dump']);
  try {
    const result = await runJob({
      PATH: `${bin}:${process.env.PATH ?? ''}`,
      DB_TYPE: 'postgresql', DB_HOST: '127.0.0.1', DB_NAME: 'bench', DB_EXTRA_ARGS: `--fake-bytes=${options.size}`,
      BACKUP_COMPRESSION: 'none',
      ...(options.sizeHint !== undefined && { BACKUP_EXPECTED_SIZE: String(options.sizeHint) }),
      STORAGE_TYPE: 'azure', STORAGE_BUCKET: container, STORAGE_ENDPOINT: azurite.endpoint,
      AZURE_STORAGE_ACCOUNT: DEV_ACCOUNT, AZURE_STORAGE_KEY: DEV_KEY,
      LOG_LEVEL: 'warn',
      ...options.vars,
    });
    if (result.code !== 0) throw new Error(`the job exited with ${result.code}: ${result.stdout.slice(-2000)}${result.stderr.slice(-2000)}`);
    const names: string[] = [];
    for await (const item of azurite.service.getContainerClient(container).listBlobsFlat()) names.push(item.name);
    if (names.length !== 1 || names[0] === undefined) throw new Error(`expected one blob, found ${names.join(', ')}`);
    await expectBlob(azurite, container, names[0], options.size);
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

async function expectBlob(azurite: Azurite, container: string, key: string, size: number): Promise<void> {
  const stored = await azurite.service.getContainerClient(container).getBlockBlobClient(key).getProperties();
  if (stored.contentLength !== size) throw new Error(`azurite holds ${stored.contentLength} bytes at ${key}, expected ${size}`);
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
  const plan = planBlocks(options.sizeHint, options.vars.STORAGE_PART_SIZE ? parseSize(options.vars.STORAGE_PART_SIZE) : undefined, options.vars.STORAGE_CONCURRENCY ? Number(options.vars.STORAGE_CONCURRENCY) : undefined);
  const settings = { size: formatBytes(options.size), blockSize: formatBytes(plan.blockSize), concurrency: plan.concurrency, predictedBuffers: formatBytes(plan.bufferBytes) };
  const modes = values.mode === 'both' ? ['target', 'job'] : [values.mode];
  for (const mode of modes) {
    // A fresh azurite per measurement, so that one run's gigabytes don't slow the next.
    const azurite = await startAzurite({ inMemory: true });
    try {
      const result = mode === 'job' ? await measureJob(azurite, options) : await measureTarget(azurite, options);
      console.log(JSON.stringify({ ...settings, ...(mode === 'target' && { chunk: formatBytes(options.chunk) }), ...result }));
    } finally {
      await azurite.stop();
    }
  }
}

if (values.child) await child(JSON.parse(values.child) as Parameters<typeof child>[0]);
else await main();
