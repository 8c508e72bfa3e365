// What the completeness checks cost the job: the same fake dump through the bundle before and after a
// change, interleaved rounds, CPU seconds of the job's own Node process and of the whole tree (CPU,
// not wall time, because wall time on a shared machine measures the neighbours). Two shapes:
// pg_dump (a head-only check: zstd keeps reading the dump directly) and mysqldump (a check of the end:
// the raw dump passes through Node). The fake writes ~8 KiB chunks, as pg_dump does.
//   node test/bench/completeness-cost.ts --before=/tmp/base/dist/main.js [--after=dist/main.js] [--size=1GB] [--rounds=3]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseSize } from '../../src/units.ts';
import { BUNDLE, fakeToolDir, NODE } from '../support/job.ts';
import { measure } from './measure.ts';

const { values: options } = parseArgs({
  options: { before: { type: 'string' }, after: { type: 'string' }, size: { type: 'string', default: '1GB' }, rounds: { type: 'string', default: '3' }, chunk: { type: 'string', default: '8192' } },
});
if (!options.before) throw new Error('--before=<bundle built from the tree before the change> is required');
const bytes = parseSize(options.size) ?? 0;
const bundles = { before: options.before, after: options.after ?? BUNDLE };
const shapes = [
  { type: 'postgresql', tool: 'pg_dump' },
  { type: 'mysql', tool: 'mysqldump' },
] as const;

const work = await mkdtemp(join(tmpdir(), 'planb-cost-'));
const results: Record<string, { node: number[]; tree: number[]; wall: number[] }> = {};
try {
  for (let round = 0; round < Number(options.rounds); round++) {
    for (const shape of shapes) {
      const bin = await fakeToolDir([shape.tool, 'mariadb']);
      for (const [label, bundle] of round % 2 === 0 ? Object.entries(bundles) : Object.entries(bundles).reverse()) {
        const bucket = join(work, `${shape.tool}-${label}-${round}`);
        const m = await measure({
          argv: [NODE, bundle],
          env: {
            PATH: `${bin}:${process.env.PATH ?? ''}`, HOME: process.env.HOME ?? '/root',
            DB_TYPE: shape.type, DB_HOST: '127.0.0.1', DB_NAME: 'bench', DB_EXTRA_ARGS: JSON.stringify([`--fake-bytes=${bytes}`, `--fake-chunk=${options.chunk}`]),
            STORAGE_TYPE: 'local', STORAGE_BUCKET: bucket,
          },
          timeoutMs: 600_000,
        });
        await rm(bucket, { recursive: true, force: true });
        if (!m.ok) throw new Error(`${shape.tool} ${label} failed: ${m.stderrTail}`);
        const key = `${shape.tool} ${label}`;
        results[key] ??= { node: [], tree: [], wall: [] };
        results[key].node.push(m.peaks.find((p) => p.root)?.cpuSeconds ?? Number.NaN);
        results[key].tree.push(m.cpuSeconds);
        results[key].wall.push(m.wallMs / 1000);
        console.error(`round ${round + 1} ${key}: node ${results[key].node.at(-1)?.toFixed(2)} s, tree ${m.cpuSeconds.toFixed(2)} s, wall ${(m.wallMs / 1000).toFixed(1)} s`);
      }
    }
  }
} finally {
  await rm(work, { recursive: true, force: true });
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? Number.NaN;
console.log(`| dump (${options.size}, ${options.chunk}-byte writes) | bundle | Node CPU s | tree CPU s | wall s |`);
console.log('|---|---|---|---|---|');
for (const [key, r] of Object.entries(results)) {
  const [tool, label] = key.split(' ');
  console.log(`| ${tool} | ${label} | ${median(r.node).toFixed(2)} | ${median(r.tree).toFixed(2)} | ${median(r.wall).toFixed(1)} |`);
}
