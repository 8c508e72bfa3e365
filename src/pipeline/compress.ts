// The compression stage. A CLI compressor (zstd, pigz, gzip) runs as a child process, in parallel
// with the dump and off the JavaScript thread; Node's zlib is the fallback when no CLI is on PATH.
// zstd reads the dump tool's stdout itself (the tool is started with `input` as its stdout), so the
// raw bytes never pass through JavaScript; it tells how many it read when it exits. Figures behind
// every default: docs/benchmarks.md.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Duplex, type Readable, type Transform, type Writable } from 'node:stream';
import { constants, createGzip, createZstdCompress } from 'node:zlib';
import { DumpError, StoppedError } from '../errors.ts';
import type { Compression } from '../engines/types.ts';
import { which } from '../which.ts';
import { withTimeout } from '../timeout.ts';
import { coalesce } from './coalesce.ts';

// Default levels. zstd 1: on a dump it costs ~60 % of level 3's CPU for a file within a few per cent of
// its size, and CPU is what a 2-core job shares with the dump tool. gzip 6: gzip's own default.
export const DEFAULT_LEVEL = { zstd: 1, gzip: 6 } as const;

// zstd worker threads. One worker at level 1 compresses faster than any dump tool writes, and
// -T0 counts the host's cores, not the container's share: 64 workers on a big host would multiply memory.
export const ZSTD_THREADS = 1;

// Output extension each compression adds to the key.
export const EXTENSION = { zstd: '.zst', gzip: '.gz', none: '' } as const satisfies Record<Compression, string>;

// MIME type of the stored object.
export const CONTENT_TYPE = { zstd: 'application/zstd', gzip: 'application/gzip', none: 'application/octet-stream' } as const satisfies Record<Compression, string>;

// How much of the compressor's stderr to keep for an error message and for zstd's summary line.
const STDERR_TAIL_BYTES = 4096;
// After the compressor exited, how long its stderr may take to deliver the last lines (zstd's summary).
const STDERR_GRACE_MS = 2_000;
// zstd -vv ends with `/*stdin*\ : 26.82% (1595106947 B => 427739273 B, /*stdout*\)`: exact byte counts.
const ZSTD_SUMMARY = /\(\s*(\d+) B =>\s*(\d+) B,/g;
// Lines zstd -vv prints on every run; an error message quotes the others.
const ZSTD_CHATTER = /^(\*\*\* Zstandard|Note: |--zstd=|--format=|Using std(in|out) for|Decompression will require|\/\*stdin\*\\)/;

// A running compression stage.
export type Compressor = {
  // When set, start the dump tool with this as its stdout, then call releaseInput(): the compressor
  // reads the dump directly, and `stages` start with its compressed output. Otherwise `stages` take
  // the raw stream.
  input: Writable | undefined;
  // Closes this process's copy of `input` once the dump tool holds it, so that the compressor sees
  // the end of its input when the tool exits.
  releaseInput(): void;
  // Stages to put in the pipeline, in order.
  stages: readonly (Readable | Duplex | Transform)[];
  // Raw bytes the compressor read (final once `exited` resolved); undefined when it does not count them
  // and the pipeline must.
  rawBytes(): number | undefined;
  // What does the work, for the log: `zstd -1 -T1` or `node:zlib zstd level 3`.
  describe: string;
  // Resolves when the compressor finished cleanly; rejects with a DumpError (stage compress).
  exited: Promise<void>;
  // Stops it at once (after a failure elsewhere).
  kill(): void;
};

type Cli = { names: readonly string[]; args: (level: number) => string[]; readsDump: boolean };

const CLIS = {
  // -vv: the exact byte counts at the end (and a few header lines); --no-progress: nothing per block.
  zstd: { names: ['zstd'], args: (level) => ['-vv', '--no-progress', '-c', `-${level}`, `-T${ZSTD_THREADS}`], readsDump: true },
  // pigz compresses on every core; plain gzip is single-threaded and much slower. Neither reports the
  // bytes it read, so the dump passes through JavaScript to be counted.
  gzip: { names: ['pigz', 'gzip'], args: (level) => ['-c', `-${level}`], readsDump: false },
} as const satisfies Record<Exclude<Compression, 'none'>, Cli>;

// Starts the compressor for `compression`, or returns undefined for `none`.
export function startCompressor(compression: Compression, level: number | undefined, path: string): Compressor | undefined {
  if (compression === 'none') return undefined;
  const effective = level ?? DEFAULT_LEVEL[compression];
  const cli = which(CLIS[compression].names, path);
  return cli ? startCli(cli.file, cli.name, CLIS[compression], effective, path) : startZlib(compression, effective);
}

function startCli(file: string, name: string, cli: Cli, level: number, path: string): Compressor {
  const args = cli.args(level);
  const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: path } });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_BYTES);
  });
  const stderrClosed = new Promise<void>((resolve) => {
    child.stderr.once('close', resolve);
  });
  let finalRawBytes: number | undefined;
  // Set when kill() stopped it because something else failed: an exit seen after that is not a failure
  // of its own, even one it made itself (a write error once its reader was gone).
  let stopped = false;
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (error) => reject(new DumpError(`${name} could not start: ${error.message}`, { kind: 'failed', stage: 'compress' }, { cause: error })));
    // 'exit', not 'close': after a failure elsewhere the stdio pipes may never close on their own.
    child.once('exit', (code, signal) => {
      void settle(code, signal).then(resolve, reject);
    });
  });
  const settle = async (code: number | null, signal: NodeJS.Signals | null): Promise<void> => {
    await withTimeout(stderrClosed, STDERR_GRACE_MS);
    const problems = stderr.split('\n').filter((line) => line.trim() !== '' && !ZSTD_CHATTER.test(line)).join('\n');
    if (stopped && code !== 0) throw new StoppedError('compress', name);
    if (code !== 0) {
      throw new DumpError(`${name} failed (${signal ? `killed by ${signal}` : `exit code ${code}`})${problems ? `: ${problems}` : ''}`, {
        kind: 'failed',
        stage: 'compress',
        exitCode: code ?? undefined,
        signal: signal ?? undefined,
        stderrTail: problems,
      });
    }
    if (!cli.readsDump) return;
    const summary = [...stderr.matchAll(ZSTD_SUMMARY)].at(-1);
    // The summary is the only place the raw byte count (and so an empty dump) shows when zstd reads the
    // dump itself; the image pins zstd, and test/e2e runs the real one.
    if (!summary) throw new DumpError(`${name} exited 0 but did not report how many bytes it read`, { kind: 'failed', stage: 'compress', stderrTail: stderr });
    finalRawBytes = Number(summary[1]);
  };
  // A failure of the stage itself is reported through `exited`; keep the pipeline's copy quiet.
  exited.catch(() => undefined);
  let inputReleased = false;
  // The last progress figure, kept for the report of a run that fails after the child is gone.
  let readSoFar = 0;
  return {
    input: cli.readsDump ? child.stdin : undefined,
    releaseInput: () => {
      if (!cli.readsDump) return;
      inputReleased = true;
      child.stdin.destroy();
    },
    // No coalescing before a CLI: gathering 1 MiB chunks cost more CPU than the writes it saved (docs/benchmarks.md).
    stages: cli.readsDump ? [child.stdout] : [Duplex.from({ writable: child.stdin, readable: child.stdout })],
    rawBytes: () => {
      if (!cli.readsDump) return undefined;
      readSoFar = Math.max(readSoFar, bytesReadSoFar(child.pid));
      return finalRawBytes ?? readSoFar;
    },
    describe: [name, ...args.filter((arg) => !['-c', '-q', '-vv', '--no-progress'].includes(arg))].join(' '),
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) {
        stopped = true;
        child.kill('SIGKILL');
      }
      if (!inputReleased) child.stdin.destroy();
      child.stdout.destroy();
    },
  };
}

// While the compressor runs, its read count from /proc, for progress lines only (0 where /proc is
// not readable): the exact figure comes from its summary at exit.
function bytesReadSoFar(pid: number | undefined): number {
  if (pid === undefined) return 0;
  let io: string;
  try {
    io = readFileSync(`/proc/${pid}/io`, 'utf8');
  } catch {
    return 0; // not Linux, no permission, or it has just exited: progress shows 0, nothing depends on it
  }
  return Number(/^rchar: (\d+)$/m.exec(io)?.[1] ?? 0);
}

function startZlib(compression: 'zstd' | 'gzip', level: number): Compressor {
  const zlibStream =
    compression === 'zstd'
      ? createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: level }, chunkSize: 128 * 1024 })
      : createGzip({ level, chunkSize: 128 * 1024 });
  const exited = new Promise<void>((resolve, reject) => {
    zlibStream.once('end', resolve);
    // zlib's own failures carry its codes; any other error was put there by the pipeline tearing the
    // stream down after another stage failed, and a close without an end is kill().
    zlibStream.once('error', (error: NodeJS.ErrnoException) => {
      const own = /^(Z_|ERR_ZLIB|ERR__ZSTD)/.test(error.code ?? '');
      reject(own ? new DumpError(`node:zlib ${compression} failed: ${error.message}`, { kind: 'failed', stage: 'compress' }, { cause: error }) : new StoppedError('compress', `node:zlib ${compression}`));
    });
    zlibStream.once('close', () => reject(new StoppedError('compress', `node:zlib ${compression}`)));
  });
  exited.catch(() => undefined);
  return {
    input: undefined,
    releaseInput: () => undefined,
    // Node's zlib is fast only on large inputs: coalesce the dump's small chunks first.
    stages: [coalesce(), zlibStream],
    rawBytes: () => undefined,
    describe: `node:zlib ${compression} level ${level}`,
    exited,
    kill: () => zlibStream.destroy(),
  };
}
