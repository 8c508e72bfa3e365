// What a verification costs on the PostgreSQL benchmark database: back it up once with BACKUP_FACTS
// (row counts in pg_dump's snapshot), then time JOB_MODE=verify on that object, measuring the whole
// process tree (the job, pg_restore, the throw-away postgres and its backends), and JOB_MODE=restore of
// it into an empty database of the same server.
//
//   npm run build && node test/bench/verify.ts [--pg-size=1.5GB]
import { execFileSync } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { parseSize } from '../../src/units.ts';
import { BUNDLE, NODE } from '../support/job.ts';
import { startPostgres } from '../support/servers.ts';
import { measure, type Measurement } from './measure.ts';
import { seedPostgres } from './seed.ts';

const { values: options } = parseArgs({ options: { 'pg-size': { type: 'string', default: '1.5GB' } } });
const size = parseSize(options['pg-size']) ?? 1.5e9;
// Generous: seeding is done; a verification of a few GB takes minutes on 2 shared cores.
const TIMEOUT_MS = 60 * 60_000;

const mib = (bytes: number) => (bytes / 2 ** 20).toFixed(0);
const seconds = (ms: number) => (ms / 1000).toFixed(1);

const work = await mkdtemp(join(tmpdir(), 'planb-bench-verify-'));
const pg = await startPostgres();
try {
  process.stderr.write(`seeding a ~${(size / 1e9).toFixed(1)} GB dump's worth of data\n`);
  await seedPostgres(pg, 'shop', size);
  const account = process.getuid?.() === 0 ? execFileSync('getent', ['passwd', 'postgres']).toString().split(':') : undefined;
  const env = {
    PATH: `${pg.binDir}:${process.env.PATH ?? ''}`, HOME: work,
    DB_TYPE: 'postgresql', DB_HOST: pg.host, DB_PORT: String(pg.port), DB_NAME: 'shop', DB_USERNAME: pg.user, DB_PASSWORD: pg.password,
    STORAGE_TYPE: 'local', STORAGE_BUCKET: join(work, 'bucket'),
    ...(account && { VERIFY_RUN_AS: `${account[2]}:${account[3]}` }),
  };
  const run = async (label: string, extra: Record<string, string>): Promise<{ result: Measurement; log: string }> => {
    const stdoutFile = join(work, `${label}.log`);
    const result = await measure({ argv: [NODE, BUNDLE], env: { ...env, ...extra }, stdoutFile, timeoutMs: TIMEOUT_MS });
    const log = await readFile(stdoutFile, 'utf8');
    if (!result.ok) throw new Error(`${label} failed (exit ${result.exitCode}):\n${log.slice(-3000)}`);
    return { result, log };
  };
  const plain = await run('backup', {});
  const withFacts = await run('backup-facts', { BACKUP_FACTS: 'true' });
  const keys = (await readdir(join(work, 'bucket'))).filter((key) => key.endsWith('.dump.zst')).sort();
  const verify = await run('verify', { JOB_MODE: 'verify', RESTORE_KEY: keys.at(-1) ?? '' });
  const verdict = verify.log.split('\n').find((line) => line.includes('"verification passed:'));
  await pg.createDatabase('restored');
  const restore = await run('restore', { JOB_MODE: 'restore', RESTORE_KEY: keys.at(-1) ?? '', DB_NAME: 'restored' });
  const job = (m: Measurement) => m.peaks.find((peak) => peak.root)?.hwmBytes ?? 0;
  console.log('| Run | Wall (s) | Job peak RSS (MiB) | Process tree peak RSS (MiB) | CPU (s) |');
  console.log('|---|---|---|---|---|');
  for (const [label, { result }] of [['backup', plain], ['backup, BACKUP_FACTS=true', withFacts], ['JOB_MODE=verify', verify], ['JOB_MODE=restore', restore]] as const) {
    console.log(`| ${label} | ${seconds(result.wallMs)} | ${mib(job(result))} | ${mib(result.treeRssBytes)} | ${result.cpuSeconds.toFixed(1)} |`);
  }
  console.log(`\n${verdict ? (JSON.parse(verdict) as { message: string }).message : 'no verdict line'}`);
} finally {
  await pg.stop();
  await rm(work, { recursive: true, force: true });
}
