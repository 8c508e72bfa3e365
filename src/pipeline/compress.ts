// The compression stage. A CLI compressor (zstd, pigz, gzip) runs as a child process, in parallel
// with the dump and off the JavaScript thread; Node's zlib is the fallback when no CLI is on PATH.
import { spawn } from 'node:child_process';
import { Duplex, type Transform } from 'node:stream';
import { constants, createGzip, createZstdCompress } from 'node:zlib';
import { DumpError } from '../errors.ts';
import type { Compression } from '../engines/types.ts';
import { which } from '../which.ts';
import { coalesce } from './coalesce.ts';

// Default levels: zstd 3 and gzip 6 are each tool's own default balance of speed and size.
export const DEFAULT_LEVEL = { zstd: 3, gzip: 6 } as const;

// Output extension each compression adds to the key.
export const EXTENSION = { zstd: '.zst', gzip: '.gz', none: '' } as const satisfies Record<Compression, string>;

// MIME type of the stored object.
export const CONTENT_TYPE = { zstd: 'application/zstd', gzip: 'application/gzip', none: 'application/octet-stream' } as const satisfies Record<Compression, string>;

// How much of the compressor's stderr to keep for an error message.
const STDERR_TAIL_BYTES = 2048;

// A running compression stage: write raw bytes in, read compressed bytes out.
export type Compressor = {
  // Stages to put in the pipeline, in order.
  stages: readonly (Duplex | Transform)[];
  // What does the work, for the log: `zstd -3 -T0` or `node:zlib zstd level 3`.
  describe: string;
  // Resolves when the compressor finished cleanly; rejects with a DumpError (stage compress).
  exited: Promise<void>;
  // Stops it at once (after a failure elsewhere).
  kill(): void;
};

type Cli = { names: readonly string[]; args: (level: number) => string[] };

const CLIS = {
  // -T0: one worker per core; -q: no progress on stderr; reads stdin, writes stdout.
  zstd: { names: ['zstd'], args: (level) => ['-q', '-c', `-${level}`, '-T0'] },
  // pigz compresses on every core; plain gzip is single-threaded and much slower.
  gzip: { names: ['pigz', 'gzip'], args: (level) => ['-c', `-${level}`] },
} as const satisfies Record<Exclude<Compression, 'none'>, Cli>;

// Starts the compressor for `compression`, or returns undefined for `none`.
export function startCompressor(compression: Compression, level: number | undefined, path: string): Compressor | undefined {
  if (compression === 'none') return undefined;
  const effective = level ?? DEFAULT_LEVEL[compression];
  const cli = which(CLIS[compression].names, path);
  return cli ? startCli(cli.file, cli.name, CLIS[compression].args(effective), path) : startZlib(compression, effective);
}

function startCli(file: string, name: string, args: string[], path: string): Compressor {
  const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'], env: { PATH: path } });
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (text: string) => {
    stderr = (stderr + text).slice(-STDERR_TAIL_BYTES);
  });
  const exited = new Promise<void>((resolve, reject) => {
    child.once('error', (error) => reject(new DumpError(`${name} could not start: ${error.message}`, { kind: 'failed', stage: 'compress' }, { cause: error })));
    // 'exit', not 'close': after a failure elsewhere the stdio pipes may never close on their own.
    child.once('exit', (code, signal) => {
      if (code === 0) return resolve();
      reject(
        new DumpError(`${name} failed (${signal ? `killed by ${signal}` : `exit code ${code}`})${stderr ? `: ${stderr.trim()}` : ''}`, {
          kind: 'failed',
          stage: 'compress',
          exitCode: code ?? undefined,
          signal: signal ?? undefined,
          stderrTail: stderr,
        }),
      );
    });
  });
  // A failure of the stage itself is reported through `exited`; keep the pipeline's copy quiet.
  exited.catch(() => undefined);
  return {
    stages: [Duplex.from({ writable: child.stdin, readable: child.stdout })],
    describe: [name, ...args.filter((arg) => arg !== '-c' && arg !== '-q')].join(' '),
    exited,
    kill: () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      child.stdin.destroy();
      child.stdout.destroy();
    },
  };
}

function startZlib(compression: 'zstd' | 'gzip', level: number): Compressor {
  const zlibStream =
    compression === 'zstd'
      ? createZstdCompress({ params: { [constants.ZSTD_c_compressionLevel]: level }, chunkSize: 128 * 1024 })
      : createGzip({ level, chunkSize: 128 * 1024 });
  const exited = new Promise<void>((resolve, reject) => {
    zlibStream.once('end', resolve);
    zlibStream.once('error', (error) => reject(new DumpError(`node:zlib ${compression} failed: ${error.message}`, { kind: 'failed', stage: 'compress' }, { cause: error })));
  });
  exited.catch(() => undefined);
  return {
    // Node's zlib is fast only on large inputs: coalesce the dump's small chunks first.
    stages: [coalesce(), zlibStream],
    describe: `node:zlib ${compression} level ${level}`,
    exited,
    kill: () => zlibStream.destroy(),
  };
}
