// `npm run bench`: the job against the physical limit and against what users run today, on
// throw-away databases generated for the purpose. Interleaved rounds, medians, one table per
// database, the verdict on each of the project's bars, and a memory sweep with a fake dump tool.
//
//   npm run bench                          everything, 3 rounds, a ~1.5 GB PostgreSQL dump
//   npm run bench -- --groups=postgresql --rounds=5 --pg-size=2GB
//   npm run bench -- --groups=memory --memory-sizes=100MB,10GB,50GiB
//   npm run bench -- --groups=postgresql --scenarios=limit,job-local --variants=variants.json
//
// --variants names a JSON file of extra job scenarios, [{ "id", "bundle"?, "env"? }], to compare a
// code change (another bundle built from the changed tree) or a setting (BACKUP_COMPRESSION_LEVEL).
import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import { cpus, totalmem, release, tmpdir } from 'node:os';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { S3Client } from '@aws-sdk/client-s3';
import { execa } from 'execa';
import { ENGINES } from '../../src/engines/registry.ts';
import type { DbConfig } from '../../src/engines/types.ts';
import { STORAGE_TYPES } from '../../src/storage/registry.ts';
import { parseSize } from '../../src/units.ts';
import { BUNDLE, fakeToolDir, NODE, ROOT } from '../support/job.ts';
import { startMariadb, startPostgres, startRedis, type TestServer } from '../support/servers.ts';
import { findBinary } from '../support/require-binary.ts';
import { measure, waitForQuiet, type Measurement } from './measure.ts';
import { summarize, table, verdicts, verdictTable, type Run, type Summary } from './report.ts';
import { AWS_CLI, RCLONE, jobS3Scenario, scenariosFor, shellQuote, writeAwsConfig, writeRcloneConfig, type Environment, type Group, type Scenario, type Target } from './scenarios.ts';
import { seedMariadb, seedPostgres, seedRedis } from './seed.ts';

const GROUPS = ['postgresql', 'mariadb', 'redis', 'memory'] as const;
const BUCKET = 'bench';
// The database every generated dataset lives in.
const DATABASE = 'shop';
// Flat memory means the same peak for a small and a large dump, within this.
const MEMORY_TOLERANCE = 0.1;
// Below this size a run still warms up (V8's young generation grows in the first seconds), so growth
// is judged between the runs of at least this size; the spread over all sizes is reported beside it.
const MEMORY_WARM_BYTES = 1e9;
const MEMORY_CEILING_BYTES = 200 * 1024 * 1024;
// Other work may share the host: before each run wait (at most QUIET_WAIT_MS) until they use
// less than QUIET_CORES, and repeat a run (at most RETRIES times) in which they used more than
// DISTURBED_SHARE of the machine's CPU.
const QUIET_CORES = 0.15;
const QUIET_WAIT_MS = 180_000;
const DISTURBED_SHARE = 0.05;
const RETRIES = 2;
// A young generation of 1 MiB semi-spaces instead of V8's up to 16 MiB (see the memory section).
const TUNED_NODE_OPTIONS = '--max-semi-space-size=1';

const { values: options } = parseArgs({
  options: {
    groups: { type: 'string', default: 'postgresql,mariadb,redis,memory' },
    rounds: { type: 'string', default: '3' },
    'pg-size': { type: 'string', default: '1.5GB' },
    'mariadb-size': { type: 'string', default: '600MB' },
    'redis-size': { type: 'string', default: '400MB' },
    'memory-sizes': { type: 'string', default: '100MB,4GB,10GB' },
    scenarios: { type: 'string' },
    variants: { type: 'string' },
    'timeout-s': { type: 'string', default: '600' },
    json: { type: 'string' },
    // The job's bundle; default dist/main.js as `npm run bench` just built it.
    bundle: { type: 'string' },
    // A machine that will not be quiet: no waiting and no repeats; every run counts, and the "others"
    // column says how disturbed it was. Compare scenarios only within such a run.
    busy: { type: 'boolean', default: false },
  },
});

type Variant = { id: string; bundle?: string; env?: Record<string, string> };

const groups = new Set(options.groups.split(',').map((g) => g.trim()));
for (const group of groups) if (!(GROUPS as readonly string[]).includes(group)) throw new Error(`unknown group ${group}; one of ${GROUPS.join(', ')}`);
const rounds = Number(options.rounds);
const onlyScenarios = options.scenarios ? new Set(options.scenarios.split(',')) : undefined;
const variants: Variant[] = options.variants ? (JSON.parse(await readFile(options.variants, 'utf8')) as Variant[]) : [];
const s3Supported = (STORAGE_TYPES as readonly string[]).includes('s3');
const cores = cpus().length;

function bytesOf(text: string): number {
  const bytes = parseSize(text);
  if (bytes === undefined) throw new Error(`not a size: ${text}`);
  return bytes;
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function version(file: string, args: string[]): Promise<string> {
  const result = await execa(file, args, { reject: false, all: true, timeout: 10_000 });
  return (result.all ?? '').split('\n').find((l) => l.trim() !== '')?.trim() ?? 'unknown';
}

async function machine(): Promise<string> {
  const cpu = cpus();
  const tools = await Promise.all([
    version(NODE, ['--version']).then((v) => `node ${v}`),
    version(findBinary('pg_dump') ?? 'pg_dump', ['--version']),
    version(findBinary('mariadb-dump') ?? 'mariadb-dump', ['--version']),
    version(findBinary('redis-cli') ?? 'redis-cli', ['--version']),
    version('zstd', ['--version']),
    version('gzip', ['--version']),
    version(AWS_CLI, ['--version']),
    version(RCLONE, ['version']),
  ]);
  return [`${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, Linux ${release()}`, ...tools].join('\n');
}

// The S3 mock in its own process; resolves once it listens.
async function startS3Mock(): Promise<{ child: ChildProcess; endpoint: string; region: string }> {
  const child = spawn(NODE, [join(ROOT, 'test/bench/s3-mock.ts'), BUCKET], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const first = await new Promise<string>((resolve, reject) => {
    lines.once('line', resolve);
    child.once('exit', (code) => reject(new Error(`the S3 mock exited with ${code} before it listened`)));
  });
  const { endpoint, region } = JSON.parse(first) as { endpoint: string; region: string };
  return { child, endpoint, region };
}

// The job's own dump command for these settings: the limit runs exactly what the job runs.
async function dumpCommand(db: DbConfig, secretsDir: string, path: string): Promise<{ argv: string[]; env: Record<string, string> }> {
  const engine = ENGINES[db.type];
  const tool = engine.tools(db).map((name) => findBinary(name, path.split(':'))).find((f) => f !== undefined);
  if (!tool) throw new Error(`no ${engine.tools(db).join('/')} found`);
  const command = engine.command(db, { secretsDir, tool, compression: 'zstd' });
  for (const file of command.files) await writeFile(file.path, file.content, { mode: 0o600 });
  return { argv: [command.file, ...command.args], env: { ...command.env } };
}

function dbConfig(type: DbConfig['type'], server: TestServer, name: string | undefined): DbConfig {
  return { type, host: server.host, port: server.port, name, username: server.user, password: server.password, tls: undefined, tlsCaFile: undefined, allDatabases: false, extraArgs: [], sqliteQuickCheck: true };
}

function jobEnvFor(db: DbConfig): Record<string, string> {
  return {
    DB_TYPE: db.type,
    DB_HOST: db.host ?? '',
    DB_PORT: String(db.port),
    ...(db.name !== undefined && { DB_NAME: db.name }),
    ...(db.type !== 'redis' && { DB_USERNAME: db.username ?? '' }),
    DB_PASSWORD: db.password ?? '',
  };
}

// Runs every scenario `rounds` times, interleaved and rotated so no scenario always goes first.
async function runRounds(scenarios: readonly Scenario[], env: Environment, label: string): Promise<Run[]> {
  const runs: Run[] = [];
  const limit = scenarios.find((s) => s.isLimit);
  if (limit) {
    log(`${label}: warm-up run of the limit (not counted)`);
    await measure({ ...limit.command(0), timeoutMs: env.timeoutMs });
  }
  let runNumber = 1;
  for (let round = 0; round < rounds; round++) {
    const order = scenarios.map((_, i) => scenarios[(i + round) % scenarios.length]!);
    for (const scenario of order) {
      const run = runNumber++;
      const stdoutFile = join(env.workDir, `stdout-${run}.log`);
      let measurement: Measurement | undefined;
      let facts: Awaited<ReturnType<Scenario['collect']>> = {};
      for (let attempt = 0; attempt <= (options.busy ? 0 : RETRIES); attempt++) {
        if (!options.busy) await waitForQuiet(env.services, QUIET_CORES, QUIET_WAIT_MS);
        const next = await measure({ ...scenario.command(run), stdoutFile, services: env.services });
        facts = await scenario.collect(run, stdoutFile);
        await execa('sync');
        if (!measurement || next.foreignCpuSeconds < measurement.foreignCpuSeconds) measurement = next;
        if (options.busy || next.foreignCpuSeconds <= DISTURBED_SHARE * cores * (next.wallMs / 1000)) break;
        log(`${label} ${scenario.id}: other workloads used ${next.foreignCpuSeconds.toFixed(1)} CPU s during the run; repeating it`);
      }
      if (!measurement) throw new Error('unreachable: no attempt was made');
      if (!measurement.ok) log(`${label} ${scenario.id} round ${round + 1} FAILED (exit ${measurement.exitCode}): ${measurement.stderrTail.slice(-800)}\n${(await readFile(stdoutFile, 'utf8')).slice(-800)}`);
      await rm(stdoutFile, { force: true });
      runs.push({ scenario, round, measurement, ...facts });
      log(
        `${label} round ${round + 1}/${rounds} ${scenario.id}: ${(measurement.wallMs / 1000).toFixed(1)} s, cpu ${measurement.cpuSeconds.toFixed(1)} s, ` +
          `services ${measurement.serviceCpuSeconds.toFixed(1)} s, foreign ${measurement.foreignCpuSeconds.toFixed(1)} s, ` +
          `root rss ${((measurement.peaks.find((p) => p.root)?.hwmBytes ?? 0) / 2 ** 20).toFixed(0)} MiB${facts.storedBytes ? `, stored ${(facts.storedBytes / 1e6).toFixed(0)} MB` : ''}`,
      );
    }
  }
  return runs;
}

function variantScenarios(env: Environment, target: Target, base: Scenario): Scenario[] {
  return variants.map((variant) => ({
    ...base,
    id: variant.id,
    label: `job variant ${variant.id}`,
    command: (run) => {
      const command = base.command(run);
      return { ...command, argv: [env.jobNode, variant.bundle ?? env.jobBundle], env: { ...command.env, ...variant.env } };
    },
  }));
}

function s3JobEnv(env: Environment): ((run: number) => Record<string, string>) | undefined {
  const s3 = env.s3;
  if (!s3 || !s3Supported) return undefined;
  return (run) => ({
    STORAGE_TYPE: 's3',
    STORAGE_BUCKET: s3.bucket,
    STORAGE_ENDPOINT: s3.endpoint,
    STORAGE_REGION: s3.region,
    STORAGE_ACCESS_KEY_ID: 'S3RVER',
    STORAGE_SECRET_ACCESS_KEY: 'S3RVER',
    BACKUP_PATH: `job-s3/run-${run}/`,
  });
}

// The scenarios of one database: limit, job → local, (peers), job → S3, variants; filtered by --scenarios.
function groupScenarios(env: Environment, target: Target, peers: boolean): Scenario[] {
  const all = scenariosFor(env, target, { peers });
  const s3Env = s3JobEnv(env);
  if (s3Env) all.push(jobS3Scenario(env, target, s3Env));
  const local = all.find((s) => s.id === 'job-local');
  if (local) all.push(...variantScenarios(env, target, local));
  return all.filter((s) => s.isLimit || !onlyScenarios || onlyScenarios.has(s.id));
}

async function benchPostgres(env: Environment): Promise<Run[]> {
  const server = await startPostgres();
  env.services.push(server.pid);
  try {
    const size = bytesOf(options['pg-size']);
    log(`postgresql: generating a ~${(size / 1e9).toFixed(1)} GB dump's worth of data on port ${server.port}`);
    const started = Date.now();
    await seedPostgres(server, DATABASE, size);
    log(`postgresql: generated in ${((Date.now() - started) / 1000).toFixed(0)} s, database ${await server.sql(`SELECT pg_size_pretty(pg_database_size('${DATABASE}'))`)}`);
    const path = `${server.binDir}:${process.env.PATH ?? ''}`;
    const db = dbConfig('postgresql', server, DATABASE);
    const dump = await dumpCommand(db, env.workDir, path);
    const connection = ['--no-password', `--host=${server.host}`, `--port=${server.port}`, `--username=${server.user}`];
    const target: Target = {
      group: 'postgresql',
      path,
      jobEnv: jobEnvFor(db),
      dumpArgv: dump.argv,
      dumpEnv: { ...dump.env, PGPASSFILE: server.passFile },
      recipeDump: ['pg_dump', ...connection, DATABASE].map(shellQuote).join(' '),
    };
    return await runRounds(groupScenarios(env, target, true), env, 'postgresql');
  } finally {
    env.services.splice(env.services.indexOf(server.pid), 1);
    await server.stop();
  }
}

async function benchMariadb(env: Environment): Promise<Run[]> {
  const server = await startMariadb();
  env.services.push(server.pid);
  try {
    const size = bytesOf(options['mariadb-size']);
    log(`mariadb: generating ~${(size / 1e6).toFixed(0)} MB of data`);
    await seedMariadb(server, DATABASE, size);
    const path = process.env.PATH ?? '';
    const db = dbConfig('mariadb', server, DATABASE);
    const secrets = await mkdtemp(join(env.workDir, 'mariadb-'));
    const dump = await dumpCommand(db, secrets, path);
    const target: Target = { group: 'mariadb', path, jobEnv: jobEnvFor(db), dumpArgv: dump.argv, dumpEnv: dump.env, recipeDump: dump.argv.map(shellQuote).join(' ') };
    return await runRounds(groupScenarios(env, target, false), env, 'mariadb');
  } finally {
    env.services.splice(env.services.indexOf(server.pid), 1);
    await server.stop();
  }
}

async function benchRedis(env: Environment): Promise<Run[]> {
  const server = await startRedis();
  env.services.push(server.pid);
  try {
    const size = bytesOf(options['redis-size']);
    log(`redis: generating ~${(size / 1e6).toFixed(0)} MB of keys`);
    const path = process.env.PATH ?? '';
    await seedRedis(server, findBinary('redis-cli') ?? 'redis-cli', size);
    // redis-cli --rdb is a diskless replica sync, which Redis delays 5 s by default to wait for more
    // replicas: a sleep that would hide every other difference (the limit and the job both pay it).
    await server.cli('CONFIG', 'SET', 'repl-diskless-sync-delay', '0');
    const db = dbConfig('redis', server, undefined);
    const dump = await dumpCommand({ ...db, username: undefined }, env.workDir, path);
    const target: Target = {
      group: 'redis',
      path,
      jobEnv: jobEnvFor(db),
      dumpArgv: dump.argv,
      dumpEnv: { ...dump.env },
      recipeDump: dump.argv.map(shellQuote).join(' '),
    };
    return await runRounds(groupScenarios(env, target, false), env, 'redis');
  } finally {
    env.services.splice(env.services.indexOf(server.pid), 1);
    await server.stop();
  }
}

type MemoryRow = { storage: string; bytes: number; ok: boolean; rootRssBytes: number; treeRssBytes: number; wallS: number };

// The job with a fake dump tool of several sizes: the job process's peak RSS must not grow with size.
async function benchMemory(env: Environment): Promise<MemoryRow[]> {
  const bin = await fakeToolDir(['pg_dump']);
  const rows: MemoryRow[] = [];
  try {
    const local = (run: number) => ({ STORAGE_TYPE: 'local', STORAGE_BUCKET: join(env.workDir, 'local'), BACKUP_PATH: `mem-${run}/` });
    const storages: { name: string; env: (run: number) => Record<string, string> }[] = [
      { name: 'local', env: local },
      // What would make the small and the large run peak alike: V8's young generation kept small.
      { name: `local, ${TUNED_NODE_OPTIONS}`, env: (run) => ({ ...local(run), NODE_OPTIONS: TUNED_NODE_OPTIONS }) },
    ];
    const s3Env = s3JobEnv(env);
    if (s3Env) storages.push({ name: 's3', env: s3Env });
    let run = 0;
    for (const storage of storages) {
      for (const text of options['memory-sizes'].split(',')) {
        const bytes = bytesOf(text);
        run += 1;
        const stdoutFile = join(env.workDir, `memory-${run}.log`);
        if (!options.busy) await waitForQuiet(env.services, QUIET_CORES, QUIET_WAIT_MS);
        const measurement = await measure({
          argv: [env.jobNode, env.jobBundle],
          env: {
            PATH: `${bin}:${process.env.PATH ?? ''}`,
            HOME: env.workDir,
            TMPDIR: env.workDir,
            DB_TYPE: 'postgresql',
            DB_HOST: '127.0.0.1',
            DB_NAME: 'fake',
            DB_EXTRA_ARGS: JSON.stringify([`--fake-bytes=${bytes}`]),
            ...storage.env(run),
          },
          stdoutFile,
          timeoutMs: env.timeoutMs,
        });
        const scenario = jobS3Scenario(env, { group: 'postgresql', path: '', jobEnv: {}, dumpArgv: [], dumpEnv: {}, recipeDump: '' }, () => ({}));
        await scenario.collect(run, stdoutFile).catch(() => ({}));
        await rm(join(env.workDir, 'local', `mem-${run}`), { recursive: true, force: true });
        if (!measurement.ok) log(`memory ${storage.name} ${text} FAILED: ${measurement.stderrTail.slice(-800)}\n${(await readFile(stdoutFile, 'utf8')).slice(-800)}`);
        const row = {
          storage: storage.name,
          bytes,
          ok: measurement.ok,
          rootRssBytes: measurement.peaks.find((p) => p.root)?.hwmBytes ?? Number.NaN,
          treeRssBytes: measurement.treeRssBytes,
          wallS: measurement.wallMs / 1000,
        };
        rows.push(row);
        log(`memory ${storage.name} ${text}: job peak RSS ${(row.rootRssBytes / 2 ** 20).toFixed(0)} MiB, tree ${(row.treeRssBytes / 2 ** 20).toFixed(0)} MiB, ${row.wallS.toFixed(1)} s`);
        await execa('sync');
      }
    }
  } finally {
    await rm(bin, { recursive: true, force: true });
  }
  return rows;
}

// Per storage: the largest peak against the ceiling, the spread over all sizes (the flat-memory bar),
// and the growth between the warm runs (1 GB and up). A failed run, a peak over the ceiling or growth
// between warm runs is a failure of `npm run bench`.
function memoryVerdicts(rows: readonly MemoryRow[]): { lines: string[]; failures: string[] } {
  const lines: string[] = [];
  const failures: string[] = [];
  const pct = (x: number) => `${(x * 100).toFixed(1)} %`;
  const spreadOf = (peaks: number[]) => Math.max(...peaks) / Math.min(...peaks) - 1;
  for (const storage of new Set(rows.map((r) => r.storage))) {
    const ofStorage = rows.filter((r) => r.storage === storage);
    for (const r of ofStorage.filter((row) => !row.ok)) failures.push(`${storage}: the ${(r.bytes / 1e9).toFixed(1)} GB run failed`);
    const ok = ofStorage.filter((r) => r.ok);
    if (ok.length === 0) continue;
    const peaks = ok.map((r) => r.rootRssBytes);
    const max = Math.max(...peaks);
    const spread = spreadOf(peaks);
    const warm = ok.filter((r) => r.bytes >= MEMORY_WARM_BYTES).map((r) => r.rootRssBytes);
    const growth = warm.length >= 2 ? spreadOf(warm) : undefined;
    const underCeiling = max <= MEMORY_CEILING_BYTES;
    lines.push(
      `- ${storage}: max ${(max / 2 ** 20).toFixed(0)} MiB (ceiling 200: ${underCeiling ? 'met' : 'NOT met'}), ` +
        `spread over all sizes ${pct(spread)} (same peak within ±10 %: ${spread <= MEMORY_TOLERANCE ? 'met' : 'NOT met'}), ` +
        `growth from 1 GB up ${growth === undefined ? 'not measured (fewer than two runs of 1 GB or more)' : `${pct(growth)} (${growth <= MEMORY_TOLERANCE ? 'flat' : 'GROWS'})`}`,
    );
    if (!underCeiling) failures.push(`${storage}: peak ${(max / 2 ** 20).toFixed(0)} MiB is over the 200 MiB ceiling`);
    if (growth !== undefined && growth > MEMORY_TOLERANCE) failures.push(`${storage}: peak RSS grows with the dump (${pct(growth)} between the warm runs)`);
  }
  return { lines, failures };
}

function memoryTable(rows: readonly MemoryRow[]): string {
  const lines = ['| storage | dump size | job process peak RSS MiB | tree RSS MiB | wall s | raw MB/s |', '|---|---|---|---|---|---|'];
  for (const r of rows) {
    lines.push(`| ${r.storage} | ${(r.bytes / 1e9).toFixed(r.bytes < 1e9 ? 1 : 0)} GB | ${r.ok ? (r.rootRssBytes / 2 ** 20).toFixed(0) : 'FAILED'} | ${(r.treeRssBytes / 2 ** 20).toFixed(0)} | ${r.wallS.toFixed(1)} | ${(r.bytes / 1e6 / r.wallS).toFixed(0)} |`);
  }
  return [...lines, '', ...memoryVerdicts(rows).lines].join('\n');
}

async function main(): Promise<void> {
  const workDir = await mkdtemp(join(tmpdir(), 'planb-bench-'));
  // Ctrl-C: exit through process 'exit', where servers.ts stops the servers and removes their dirs.
  process.on('exit', () => rmSync(workDir, { recursive: true, force: true }));
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => process.exit(130));
  await mkdir(join(workDir, 'local'));
  let s3Mock: ChildProcess | undefined;
  const env: Environment = { workDir, jobNode: NODE, jobBundle: options.bundle ?? BUNDLE, timeoutMs: Number(options['timeout-s']) * 1000, services: [] };
  const runs: Run[] = [];
  let memoryRows: MemoryRow[] = [];
  try {
    log(`machine:\n${await machine()}`);
    if (groups.has('postgresql') || s3Supported) {
      const mock = await startS3Mock();
      s3Mock = mock.child;
      if (mock.child.pid !== undefined) env.services.push(mock.child.pid);
      const awsConfigFile = join(workDir, 'aws-config');
      const rcloneConfigFile = join(workDir, 'rclone.conf');
      await writeAwsConfig(awsConfigFile, mock.region);
      await writeRcloneConfig(rcloneConfigFile, mock.endpoint, mock.region);
      const client = new S3Client({ endpoint: mock.endpoint, region: mock.region, forcePathStyle: true, credentials: { accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER' } });
      env.s3 = { endpoint: mock.endpoint, region: mock.region, bucket: BUCKET, client, awsConfigFile, rcloneConfigFile };
      log(`S3 mock at ${mock.endpoint}${s3Supported ? '' : ' (the job has no S3 target yet: job → S3 is not measured)'}`);
    }
    if (groups.has('postgresql')) runs.push(...(await benchPostgres(env)));
    if (groups.has('mariadb')) runs.push(...(await benchMariadb(env)));
    if (groups.has('redis')) runs.push(...(await benchRedis(env)));
    if (groups.has('memory')) memoryRows = await benchMemory(env);
  } finally {
    env.s3?.client.destroy();
    s3Mock?.stdin?.end();
    await rm(workDir, { recursive: true, force: true });
  }

  const summaries: Summary[] = summarize(runs);
  const out: string[] = [`# Benchmark ${new Date().toISOString().slice(0, 10)}, ${rounds} rounds, medians`, '', '```', await machine(), '```'];
  for (const group of ['postgresql', 'mariadb', 'redis'] as const satisfies readonly Group[]) {
    if (!summaries.some((s) => s.group === group)) continue;
    out.push('', `## ${group}`, '', table(summaries, group), '', verdictTable(verdicts(summaries, group)));
  }
  if (memoryRows.length > 0) out.push('', '## memory (fake dump tool, job → storage)', '', memoryTable(memoryRows));
  process.stdout.write(`${out.join('\n')}\n`);
  // The suite cannot judge growth (its peaks are sampled while other tests run); this run can, so a
  // bar not met fails it loudly.
  const { failures } = memoryVerdicts(memoryRows);
  if (failures.length > 0) {
    log(`MEMORY BARS NOT MET:\n  - ${failures.join('\n  - ')}`);
    process.exitCode = 1;
  }
  if (options.json) {
    await writeFile(options.json, JSON.stringify({ date: new Date().toISOString(), rounds, runs: runs.map((r) => ({ ...r, scenario: { id: r.scenario.id, group: r.scenario.group, label: r.scenario.label } })), memoryRows }, null, 2));
  }
}

await main().catch((error: unknown) => {
  // execa errors quote the whole generating SQL; the first lines say what failed.
  log(`failed: ${(error instanceof Error ? (error.stack ?? error.message) : String(error)).split('\n').slice(0, 12).join('\n')}`);
  process.exitCode = 1;
});
