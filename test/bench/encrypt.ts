// The encryption stage alone, the two well-kept age implementations side by side: the job's own stage
// (src/pipeline/encrypt.ts: the reference `age` CLI as a child process) and the age authors'
// TypeScript library (npm age-encryption, pure-JavaScript ChaCha20-Poly1305). Each run pushes SIZE
// bytes of incompressible data (what a compressed dump looks like to a cipher) through the stage in
// its own process and discards the output; measure.ts reports wall, CPU of the whole process tree
// (the age child included) and peak RSS. Rounds alternate between the two.
//
//   node test/bench/encrypt.ts [--size=1GiB] [--rounds=3] [--busy]
//
// --busy: the machine will not be quiet; do not wait for it (the "other load" figure says how busy it was).
import { randomBytes } from 'node:crypto';
import { dirname } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { parseArgs } from 'node:util';
import { parseSize } from '../../src/units.ts';
import { findBinary } from '../support/require-binary.ts';
import { NODE } from '../support/job.ts';
import { measure, waitForQuiet, type Measurement } from './measure.ts';

const IMPLEMENTATIONS = ['age-cli', 'age-encryption'] as const;
type Implementation = (typeof IMPLEMENTATIONS)[number];
// The source repeats one random block: a cipher's cost does not depend on the content.
const BLOCK_BYTES = 1024 * 1024;
// A public key the runs encrypt to (made by age-keygen; its secret half was thrown away).
const RECIPIENT = 'age12v4gxrjtaee9u3zfyer59d6zulr8xejzv9k5aeffa046hqga5cnqzwnxpn';
// Other sessions may share the machine: wait for at most this many busy cores, this long.
const QUIET_CORES = 0.3;
const QUIET_WAIT_MS = 120_000;

const { values: options } = parseArgs({
  options: {
    size: { type: 'string', default: '1GiB' },
    rounds: { type: 'string', default: '3' },
    child: { type: 'string' },
    busy: { type: 'boolean', default: false },
  },
});
const size = parseSize(options.size);
if (size === undefined) throw new Error(`not a size: ${options.size}`);

function source(total: number): Readable {
  const block = randomBytes(BLOCK_BYTES);
  let sent = 0;
  return new Readable({
    read() {
      if (sent >= total) return this.push(null);
      const length = Math.min(BLOCK_BYTES, total - sent);
      sent += length;
      this.push(length === BLOCK_BYTES ? block : block.subarray(0, length));
    },
  });
}

const discard = () => new Writable({ write: (_chunk, _encoding, callback) => callback() });

// One run, inside the measured child process.
async function encryptOnce(implementation: Implementation, total: number): Promise<void> {
  if (implementation === 'age-cli') {
    const { startEncryptor } = await import('../../src/pipeline/encrypt.ts');
    const age = findBinary('age');
    if (age === undefined) throw new Error('age is not installed (apt-get install age)');
    const encryptor = startEncryptor([RECIPIENT], dirname(age));
    await Promise.all([pipeline(source(total), encryptor.stage, discard()), encryptor.exited]);
    return;
  }
  const { Encrypter } = await import('age-encryption');
  const encrypter = new Encrypter();
  encrypter.addRecipient(RECIPIENT);
  const sealed = await encrypter.encrypt(Readable.toWeb(source(total)) as ReadableStream<Uint8Array>);
  await pipeline(Readable.fromWeb(sealed as import('node:stream/web').ReadableStream<Uint8Array>), discard());
}

if (options.child !== undefined) {
  await encryptOnce(options.child as Implementation, size);
} else {
  const results: Record<Implementation, Measurement[]> = { 'age-cli': [], 'age-encryption': [] };
  for (let round = 1; round <= Number(options.rounds); round += 1) {
    for (const implementation of IMPLEMENTATIONS) {
      if (!options.busy) await waitForQuiet([], QUIET_CORES, QUIET_WAIT_MS);
      const result = await measure({ argv: [NODE, import.meta.filename, `--child=${implementation}`, `--size=${options.size}`], env: { PATH: process.env.PATH ?? '' }, timeoutMs: 600_000 });
      if (!result.ok) throw new Error(`${implementation} failed: ${result.stderrTail}`);
      results[implementation].push(result);
      console.log(`round ${round} ${implementation}: ${line(result)}`);
    }
  }
  for (const implementation of IMPLEMENTATIONS) {
    const runs = results[implementation];
    const median = (values: number[]) => values.sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;
    console.log(
      `${implementation.padEnd(15)} median of ${runs.length}: ${(size / 1e6 / (median(runs.map((r) => r.wallMs)) / 1000)).toFixed(0)} MB/s, ` +
        `${median(runs.map((r) => r.cpuSeconds)).toFixed(2)} CPU-s, peak RSS ${(median(runs.map((r) => r.maxProcessRssBytes)) / 2 ** 20).toFixed(0)} MiB, ` +
        `other load ${median(runs.map((r) => r.foreignCpuSeconds)).toFixed(1)} CPU-s`,
    );
  }
}

function line(result: Measurement): string {
  return `${(size! / 1e6 / (result.wallMs / 1000)).toFixed(0)} MB/s, wall ${(result.wallMs / 1000).toFixed(2)} s, CPU ${result.cpuSeconds.toFixed(2)} s, peak RSS ${(result.maxProcessRssBytes / 2 ** 20).toFixed(0)} MiB, other load ${result.foreignCpuSeconds.toFixed(1)} CPU-s`;
}
