// Runs the steps of a dump that must be written to disk before it can be streamed (see Spool in
// engines/types.ts): a free-space check where it goes, each step as a dump-tool child (stderr logged
// and scrubbed, failures classified by the engine), and the size it reached, logged. The caller
// streams it afterwards; it lives in the run's private directory and is removed with it.
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, stat, statfs } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { startDump, type Scrub } from './dump.ts';
import { DumpError } from './errors.ts';
import type { DumpEngine, Spool, SpoolStep } from './engines/types.ts';
import type { Logger } from './log.ts';
import { formatBytes } from './units.ts';

// Less free space than this where the spool goes and the dump is not even tried: a snapshot of an
// almost empty etcd is ~20 KiB, but filling a disk to its last MiB breaks more than this job.
const SPOOL_MIN_FREE_BYTES = 64 * 1024 * 1024;
// A step whose stdout feeds `then` prints a list of names; more than this is not a list.
const STEP_OUTPUT_MAX_BYTES = 4 * 1024 * 1024;
// A step may derive further steps; this bounds a chain that would never end.
const MAX_STEPS = 10_000;

export type SpoolOptions = {
  baseEnv: Readonly<Record<string, string>>;
  signal: AbortSignal;
  log: Logger;
  scrub: Scrub;
  // The dump tool's name, for messages.
  toolName: string;
};

// Free bytes for an unprivileged writer on the filesystem holding `dir`.
async function freeBytes(dir: string): Promise<number> {
  const stats = await statfs(dir);
  return stats.bavail * stats.bsize;
}

// Runs the spool's steps; resolves with the bytes it holds when every step exited 0.
export async function runSpool(spool: Spool, engine: DumpEngine, options: SpoolOptions): Promise<number> {
  const { log } = options;
  const where = dirname(spool.path);
  const free = await freeBytes(where);
  if (free < SPOOL_MIN_FREE_BYTES) {
    throw new DumpError(
      `only ${formatBytes(free)} free in ${where}, where the dump is written before it is streamed; at least ${formatBytes(SPOOL_MIN_FREE_BYTES)} are needed, and room for the whole dump (set TMPDIR to a larger volume)`,
      { kind: 'failed' },
    );
  }
  log.info({ spool: spool.path, freeBytes: free }, `the dump tool writes to ${spool.path} first (${formatBytes(free)} free there), then it is streamed and removed`);

  // A private directory for tools that write many files (mode 0700, inside the private directory).
  if (spool.kind === 'directory') await mkdir(spool.path, { mode: 0o700 });
  const queue: SpoolStep[] = [...spool.steps];
  for (let done = 0; queue.length > 0; done += 1) {
    if (done >= MAX_STEPS) throw new DumpError(`the dump needed more than ${MAX_STEPS} steps`, { kind: 'failed' });
    const step = queue.shift() as SpoolStep;
    const stdout = await runStep(step, engine, options);
    if (step.then) queue.unshift(...derive(step.file, step.then, stdout));
  }

  const bytes = await sizeOf(spool.path, spool.kind);
  log.info({ spool: spool.path, spoolBytes: bytes, freeBytes: await freeBytes(where) }, `the dump tool wrote ${formatBytes(bytes)} to ${spool.path}`);
  if (bytes === 0) throw new DumpError(`${options.toolName} exited 0 but wrote nothing to ${spool.path}`, { kind: 'empty' });
  return bytes;
}

// The steps a step's output calls for; an output the engine cannot read fails the dump.
function derive(file: string, then: NonNullable<SpoolStep['then']>, stdout: string): readonly SpoolStep[] {
  try {
    return then(stdout);
  } catch (error) {
    throw new DumpError(`${file}: ${error instanceof Error ? error.message : String(error)}`, { kind: 'failed' }, { cause: error });
  }
}

async function runStep(step: SpoolStep, engine: DumpEngine, options: SpoolOptions): Promise<string> {
  const dump = startDump({ ...step, files: [] }, engine, options);
  let text = '';
  try {
    if (dump.stdout && step.stdoutTo !== undefined) {
      await pipeline(dump.stdout, createWriteStream(step.stdoutTo, { mode: 0o600, flags: 'wx' }), { signal: options.signal });
    } else if (dump.stdout) {
      for await (const chunk of dump.stdout as AsyncIterable<Buffer>) {
        text += chunk.toString('utf8');
        if (text.length > STEP_OUTPUT_MAX_BYTES) throw new DumpError(`${step.file} printed more than ${formatBytes(STEP_OUTPUT_MAX_BYTES)}`, { kind: 'failed' });
      }
    }
  } catch (error) {
    dump.stop();
    await dump.exited.catch(() => undefined);
    throw error;
  }
  await dump.exited;
  return text;
}

async function sizeOf(path: string, kind: Spool['kind']): Promise<number> {
  const info = await stat(path).catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ENOENT') return undefined;
    throw error;
  });
  if (!info) return 0;
  if (kind === 'file') return info.size;
  let total = 0;
  for (const entry of await readdir(path, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += (await stat(join(entry.parentPath, entry.name))).size;
  }
  return total;
}
