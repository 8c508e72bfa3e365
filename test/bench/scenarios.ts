// What the benchmark runs, side by side on the same database: the dump tool alone (the physical
// limit), the job with default settings, and what users run today (shell pipelines into aws-cli and
// rclone). Every scenario is one command measured as a process tree; it stores under a fresh key.
import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DeleteObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Command } from './measure.ts';

// Debian's aws-cli v2, not a pyenv/pip v1 that may shadow it on PATH.
export const AWS_CLI = '/usr/bin/aws';
export const RCLONE = '/usr/bin/rclone';

export type Group = 'postgresql' | 'mariadb' | 'redis';

// One thing to measure; `command(run)` stores under a key unique to the run.
export type Scenario = {
  id: string;
  // What a reader recognises: the command line, abbreviated.
  label: string;
  group: Group;
  // The scenario the group's ratios are taken against.
  isLimit?: boolean;
  command(run: number): Command;
  // Bytes stored by that run (undefined when nothing is stored); removes what the run stored.
  collect(run: number, stdoutFile: string): Promise<{ storedBytes?: number; rawBytes?: number }>;
};

// How the benchmark reaches the database and the stores.
export type Environment = {
  workDir: string;
  jobNode: string;
  jobBundle: string;
  timeoutMs: number;
  // Root pids of the running services (database server, S3 mock): their CPU is accounted apart.
  services: number[];
  s3?: { endpoint: string; region: string; bucket: string; client: S3Client; awsConfigFile: string; rcloneConfigFile: string };
};

// A database the scenarios dump: how the job and the bare tool reach it.
export type Target = {
  group: Group;
  // PATH with the server's own client tools first.
  path: string;
  // Variables for the job (DB_*), without storage.
  jobEnv: Record<string, string>;
  // The dump tool's argv and env as the job would run it, for the limit and the shell recipes.
  dumpArgv: string[];
  dumpEnv: Record<string, string>;
  // The same tool in the form users type in a shell recipe (plain SQL for pg_dump).
  recipeDump: string;
};

// Quotes one word for bash.
export function shellQuote(value: string): string {
  return `'${value.replace(/'/g, `'\\''`)}'`;
}

// The job's last log line, 'backup stored', carries rawBytes and the object (key, bytes).
async function jobFacts(stdoutFile: string): Promise<{ storedBytes?: number; rawBytes?: number; key?: string }> {
  const lines = (await readFile(stdoutFile, 'utf8')).trim().split('\n');
  for (const line of lines.reverse()) {
    const entry = JSON.parse(line) as { message?: string; rawBytes?: number; object?: { bytes?: number; key?: string } };
    if (entry.message === 'backup stored') return { storedBytes: entry.object?.bytes, rawBytes: entry.rawBytes, key: entry.object?.key };
  }
  return {};
}

// The size of an object on the mock, then deletes it; undefined when there is none.
async function s3Collect(env: Environment, key: string): Promise<number | undefined> {
  const s3 = env.s3;
  if (!s3) return undefined;
  try {
    const head = await s3.client.send(new HeadObjectCommand({ Bucket: s3.bucket, Key: key }));
    return head.ContentLength;
  } catch (error) {
    if ((error as Error).name === 'NotFound') return undefined;
    throw error;
  } finally {
    await s3.client.send(new DeleteObjectCommand({ Bucket: s3.bucket, Key: key }));
  }
}

// The bundled job as a scheduler runs it; `storage(run)` gives the STORAGE_* / BACKUP_PATH variables.
function jobScenario(env: Environment, target: Target, id: string, label: string, storage: (run: number) => Record<string, string>): Scenario {
  return {
    id,
    label,
    group: target.group,
    command: (run) => ({
      argv: [env.jobNode, env.jobBundle],
      env: { PATH: target.path, HOME: env.workDir, TMPDIR: env.workDir, ...target.jobEnv, ...storage(run) },
      timeoutMs: env.timeoutMs,
    }),
    async collect(run, stdoutFile) {
      const facts = await jobFacts(stdoutFile);
      if (id === 'job-s3' && facts.key) await s3Collect(env, facts.key);
      await rm(join(env.workDir, 'local', `run-${run}`), { recursive: true, force: true });
      return { storedBytes: facts.storedBytes, rawBytes: facts.rawBytes };
    },
  };
}

// The scenarios for one database, in the order a round runs them.
export function scenariosFor(env: Environment, target: Target, options: { peers: boolean }): Scenario[] {
  const toolEnv = { PATH: target.path, HOME: env.workDir, ...target.dumpEnv };
  const scenarios: Scenario[] = [
    {
      id: 'limit',
      label: `${target.dumpArgv[0]?.split('/').pop()} ${target.group === 'postgresql' ? '-Fc -Z0 ' : ''}> /dev/null`,
      group: target.group,
      isLimit: true,
      command: () => ({ argv: target.dumpArgv, env: toolEnv, timeoutMs: env.timeoutMs }),
      collect: () => Promise.resolve({}),
    },
    jobScenario(env, target, 'job-local', 'job → local (defaults)', (run) => ({
      STORAGE_TYPE: 'local',
      STORAGE_BUCKET: join(env.workDir, 'local'),
      BACKUP_PATH: `run-${run}/`,
    })),
  ];
  const s3 = env.s3;
  if (options.peers && s3) {
    const key = (id: string, run: number) => `${target.group}/${id}/run-${run}`;
    const awsEnv = {
      ...toolEnv,
      AWS_ACCESS_KEY_ID: 'S3RVER',
      AWS_SECRET_ACCESS_KEY: 'S3RVER',
      AWS_DEFAULT_REGION: s3.region,
      AWS_CONFIG_FILE: s3.awsConfigFile,
      AWS_SHARED_CREDENTIALS_FILE: '/dev/null',
      // Never ask the instance metadata service, never page, never prompt.
      AWS_EC2_METADATA_DISABLED: 'true',
      AWS_PAGER: '',
      AWS_CLI_AUTO_PROMPT: 'off',
    };
    const aws = (run: number, id: string) => `${AWS_CLI} --endpoint-url ${s3.endpoint} --only-show-errors s3 cp - s3://${s3.bucket}/${key(id, run)}`;
    const recipe = (id: string, label: string, pipeline: (run: number) => string, extraEnv: Record<string, string> = {}): Scenario => ({
      id,
      label,
      group: target.group,
      command: (run) => ({ argv: ['/bin/bash', '-o', 'pipefail', '-c', pipeline(run)], env: { ...awsEnv, ...extraEnv }, timeoutMs: env.timeoutMs }),
      collect: async (run) => ({ storedBytes: await s3Collect(env, key(id, run)) }),
    });
    scenarios.push(
      recipe('gzip-aws', `${target.recipeDump.split(' ')[0]} | gzip | aws s3 cp -`, (run) => `${target.recipeDump} | gzip | ${aws(run, 'gzip-aws')}`),
      recipe('zstd-aws', `${target.recipeDump.split(' ')[0]} | zstd -3 -T0 | aws s3 cp -`, (run) => `${target.recipeDump} | zstd -q -3 -T0 | ${aws(run, 'zstd-aws')}`),
      recipe(
        'zstd-rclone',
        `${target.recipeDump.split(' ')[0]} | zstd -3 -T0 | rclone rcat`,
        (run) => `${target.recipeDump} | zstd -q -3 -T0 | ${RCLONE} rcat --config ${s3.rcloneConfigFile} bench:${s3.bucket}/${key('zstd-rclone', run)}`,
      ),
    );
  }
  return scenarios;
}

// The job to S3 (once src/storage/s3.ts exists); `s3Env(run)` gives its STORAGE_* variables.
export function jobS3Scenario(env: Environment, target: Target, s3Env: (run: number) => Record<string, string>): Scenario {
  return jobScenario(env, target, 'job-s3', 'job → S3 (defaults)', s3Env);
}

// aws-cli: path-style addressing (the mock has no per-bucket host names).
export async function writeAwsConfig(file: string, region: string): Promise<void> {
  await writeFile(file, `[default]\nregion = ${region}\ns3 =\n  addressing_style = path\n`);
}

// rclone: one S3 remote named `bench` on the mock, dummy credentials.
export async function writeRcloneConfig(file: string, endpoint: string, region: string): Promise<void> {
  await writeFile(
    file,
    ['[bench]', 'type = s3', 'provider = Other', 'env_auth = false', 'access_key_id = S3RVER', 'secret_access_key = S3RVER', `region = ${region}`, `endpoint = ${endpoint}`, 'force_path_style = true', ''].join('\n'),
  );
}
