// What the completeness stage costs the job's own process, measured alone and precisely: the zstd CLI's
// output of a dump (compressed once, with the job's own zstd flags) read from a file and passed through
// the stage the job puts after zstd (src/pipeline/completeness.ts), against the same bytes through no
// stage at all. Rounds alternate; each reports the CPU time of this process (its main thread and
// zlib's threads) and wall time. The difference is what the check adds to the job; on a backup it can
// lengthen the run by at most that CPU time. End-to-end runs against real databases cannot show it:
// their round-to-round spread is several per cent.
//
//   node test/bench/completeness-stage.ts [--input=RAW_DUMP] [--size=1GB] [--rounds=9]
//
// Without --input the raw dump is made up: SQL rows of random values (zstd -1 keeps about a third),
// opened with pg_dump's custom-format magic and closed with mysqldump's trailer, so that both checks
// pass on it. With --input, a real dump file is used as it is; the checks must pass on it.
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { ENGINES } from '../../src/engines/registry.ts';
import type { DbConfig, DbType } from '../../src/engines/types.ts';
import { watchZstd } from '../../src/pipeline/completeness.ts';
import { DEFAULT_LEVEL, ZSTD_THREADS } from '../../src/pipeline/compress.ts';
import { formatBytes, parseSize } from '../../src/units.ts';

const { values: options } = parseArgs({
  options: { input: { type: 'string' }, size: { type: 'string', default: '1GB' }, rounds: { type: 'string', default: '9' } },
});
// zstd's stdout reaches the job in pipe reads of at most this much.
const PIPE_READ_BYTES = 64 * 1024;
// The stages measured: none, and the check of each shape of dump.
const VARIANTS: readonly { id: string; what: string; type?: DbType }[] = [
  { id: 'none', what: 'no stage (the bytes only read and dropped)' },
  { id: 'head', what: 'pg_dump custom format: head check (decodes the first 4 KiB back)', type: 'postgresql' },
  { id: 'end', what: 'mysqldump: end check (decodes all of it back)', type: 'mysql' },
];

function db(type: DbType): DbConfig {
  return { type, host: '127.0.0.1', port: undefined, name: 'bench', username: undefined, password: undefined, tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: false };
}

// A made-up dump of `bytes` bytes: rows of random numbers and text, as a data dump looks to zstd.
async function makeDump(path: string, bytes: number): Promise<void> {
  const out = createWriteStream(path);
  let seed = 1;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  out.write(Buffer.from('PGDMP\x01\x0f\x00\x04\x08\x01\x01', 'latin1'));
  let written = 0;
  let row = 0;
  const trailer = '\n-- Dump completed on 2026-01-01  0:00:00\n';
  while (written < bytes - trailer.length) {
    const lines: string[] = [];
    for (let i = 0; i < 2000; i++, row++) {
      lines.push(`(${row},${Math.floor(random() * 100000)},'customer_${Math.floor(random() * 1e6)}@example.com','20${10 + Math.floor(random() * 16)}-0${1 + Math.floor(random() * 9)}-1${Math.floor(random() * 9)}',${(random() * 1000).toFixed(2)},'note ${Math.floor(random() * 2 ** 31).toString(16)}'),\n`);
    }
    const chunk = Buffer.from(lines.join('')).subarray(0, bytes - trailer.length - written);
    written += chunk.length;
    if (!out.write(chunk)) await new Promise<void>((resolve) => out.once('drain', () => resolve()));
  }
  out.end(trailer);
  await new Promise<void>((resolve, reject) => out.once('finish', () => resolve()).once('error', reject));
}

async function compress(raw: string, into: string): Promise<void> {
  const child = spawn('zstd', ['-q', '-c', `-${DEFAULT_LEVEL.zstd}`, `-T${ZSTD_THREADS}`, raw], { stdio: ['ignore', 'pipe', 'inherit'] });
  await pipeline(child.stdout, createWriteStream(into));
}

async function once(compressed: string, type: DbType | undefined): Promise<{ cpu: number; wall: number }> {
  const sink = new Writable({ write: (_chunk, _encoding, callback) => callback() });
  const start = performance.now();
  const cpu = process.cpuUsage();
  const source = createReadStream(compressed, { highWaterMark: PIPE_READ_BYTES });
  if (type === undefined) {
    await pipeline(source, sink);
  } else {
    const watch = watchZstd(ENGINES[type].completeness(db(type)), type);
    await pipeline(source, watch.stream, sink);
    await watch.verdict;
  }
  const used = process.cpuUsage(cpu);
  return { cpu: (used.user + used.system) / 1e6, wall: (performance.now() - start) / 1000 };
}

const median = (values: readonly number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;

const work = await mkdtemp(join(tmpdir(), 'planb-stage-'));
try {
  const raw = options.input ?? join(work, 'dump.raw');
  if (!options.input) await makeDump(raw, parseSize(options.size ?? '') ?? 0);
  const compressed = join(work, 'dump.zst');
  await compress(raw, compressed);
  const rawBytes = (await stat(raw)).size;
  const storedBytes = (await stat(compressed)).size;
  console.error(`raw ${formatBytes(rawBytes)}, zstd -${DEFAULT_LEVEL.zstd} output ${formatBytes(storedBytes)}`);
  const results = new Map(VARIANTS.map((variant) => [variant.id, [] as { cpu: number; wall: number }[]]));
  // One unmeasured pass warms the page cache and the JIT.
  for (const variant of VARIANTS) await once(compressed, variant.type);
  const rounds = Number(options.rounds);
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
    for (const variant of order) {
      const result = await once(compressed, variant.type);
      results.get(variant.id)?.push(result);
      console.error(`round ${round + 1} ${variant.id}: cpu ${result.cpu.toFixed(3)} s, wall ${result.wall.toFixed(3)} s`);
    }
  }
  const none = results.get('none') ?? [];
  console.log(`Raw dump ${formatBytes(rawBytes)}, zstd output ${formatBytes(storedBytes)}, ${rounds} rounds, medians; the difference is paired by round.\n`);
  console.log('| stage | CPU s | wall s | added CPU s, paired median (min … max) | added CPU s per GB stored |');
  console.log('|---|---|---|---|---|');
  for (const variant of VARIANTS) {
    const own = results.get(variant.id) ?? [];
    const added = own.map((result, index) => result.cpu - (none[index]?.cpu ?? Number.NaN));
    const perGb = (median(added) / storedBytes) * 1e9;
    const row = variant.id === 'none' ? ['–', '–'] : [`${median(added).toFixed(3)} (${Math.min(...added).toFixed(3)} … ${Math.max(...added).toFixed(3)})`, perGb.toFixed(3)];
    console.log(`| ${variant.what} | ${median(own.map((r) => r.cpu)).toFixed(3)} | ${median(own.map((r) => r.wall)).toFixed(3)} | ${row.join(' | ')} |`);
  }
} finally {
  await rm(work, { recursive: true, force: true });
}
