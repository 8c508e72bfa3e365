// JOB_MODE=verify, and BACKUP_VERIFY=true after a backup: restore the object into a throw-away server
// the job starts itself (scratch.ts), count what it holds, and compare with the facts captured at dump
// time (facts.ts). A verification that cannot run (no server binaries, too little disk or memory,
// root without VERIFY_RUN_AS) fails with VERIFY_UNAVAILABLE: nothing verified is never a success.
import { readFile, statfs } from 'node:fs/promises';
import { freemem } from 'node:os';
import { join } from 'node:path';
import type { Config } from './config.ts';
import type { Scrub } from './dump.ts';
import { ConfigError, DumpError, EncryptionError, VerifyError, VerifyUnavailableError } from './errors.ts';
import { type Facts, loadFacts, unitOf } from './facts.ts';
import type { Logger } from './log.ts';
import { finishRun, startRun, type RunOptions } from './outcome.ts';
import type { ObjectReport, RunReport, VerificationReport } from './report.ts';
import { latestKey, queryRunner, restoreObject, type RestoreResult } from './restore.ts';
import { ENGINES } from './engines/registry.ts';
import type { Counts } from './engines/types.ts';
import { ScratchExit, startScratch } from './scratch.ts';
import { STORAGE_DRIVERS } from './storage/registry.ts';
import type { StorageTarget } from './storage/types.ts';
import { createSecretsDir, removeSecretsDir } from './dump.ts';
import { formatBytes } from './units.ts';

const MiB = 1024 * 1024;
// A restored database takes more room than its dump (indexes, free space): room for this many times the raw dump.
const DISK_FACTOR = 3;
// Without a raw size, a compressed dump is assumed to expand this much.
const ASSUMED_RATIO = 8;
// The least a throw-away PostgreSQL or MariaDB needs to start and restore (shared buffers, backends).
const SERVER_MEMORY = 256 * MiB;
// Redis holds the whole dataset in memory: about this many times the RDB.
const REDIS_MEMORY_FACTOR = 3;

export type VerifyRequest = {
  target: StorageTarget;
  key: string;
  storedBytes: number;
  // Facts known in memory (verification right after the backup); else the sidecar is read.
  facts?: Facts | undefined;
  log: Logger;
  scrub: Scrub;
  signal: AbortSignal;
};

// Restores `key` into a throw-away server and compares; the report says passed or failed. Throws
// VerifyUnavailableError when it cannot run, VerifyError when the object does not restore.
export async function verifyObject(config: Config, request: VerifyRequest): Promise<{ verification: VerificationReport; restored: RestoreResult }> {
  const { log, signal } = request;
  const started = performance.now();
  const path = config.toolEnv.PATH ?? '';
  const facts = request.facts ?? (await loadFacts(request.target, request.key, { signal, decrypt: { identityFile: config.job.identityFile, path } }));
  if (!facts) log.warn({ key: request.key }, 'no facts were captured when this object was dumped (BACKUP_FACTS): it is restored, but there is nothing to compare with');
  const rawBytes = facts?.rawBytes ?? request.storedBytes * ASSUMED_RATIO;
  await checkRoom(config, rawBytes, request.storedBytes);

  const scratch = await startScratch(config.db, ENGINES[config.db.type].scratch, { path, parentDir: config.job.verifyDir, runAs: config.job.verifyRunAs, log });
  try {
    let restored: RestoreResult;
    try {
      restored = await restoreObject({
        target: request.target, key: request.key, db: scratch.db, rdbPath: config.db.type === 'redis' ? join(scratch.dir, 'dump.rdb') : undefined,
        dataDir: config.db.type === 'etcd' ? join(scratch.dir, 'data') : undefined,
        force: false, identityFile: config.job.identityFile, scratch: true, toolEnv: config.toolEnv, log, scrub: request.scrub, signal,
      });
      await scratch.start();
    } catch (error) {
      if (signal.aborted || error instanceof ConfigError || (error instanceof DumpError && error.kind === 'missing-tool')) throw error;
      // A damaged encrypted object fails like a damaged plain one; a wrong identity stays a config error.
      const damagedObject = error instanceof DumpError || error instanceof ScratchExit || (error instanceof EncryptionError && error.kind === 'corrupt');
      if (damagedObject) throw new VerifyError(`the object did not restore: ${error.message}`, { cause: error });
      throw error;
    }
    const secretsDir = await createSecretsDir(log);
    let counts: Counts;
    try {
      counts = await ENGINES[config.db.type].restorer.count(scratch.db, { secretsDir, path, query: queryRunner(config.db.type, config.toolEnv, log, request.scrub, signal) });
    } finally {
      await removeSecretsDir(secretsDir, log);
    }
    return { verification: compare(config, facts, counts, performance.now() - started), restored };
  } finally {
    await scratch.stop();
  }
}

// Every name on either side whose count differs.
function compare(config: Config, facts: Facts | undefined, counts: Counts, durationMs: number): VerificationReport {
  const expected = facts?.counts ?? {};
  const names = [...new Set([...Object.keys(expected), ...(facts ? Object.keys(counts) : [])])].sort();
  const mismatches = names
    .filter((name) => expected[name] !== counts[name])
    .map((name) => ({ name, expected: expected[name] ?? null, actual: counts[name] ?? null }));
  return {
    status: mismatches.length === 0 ? 'passed' : 'failed',
    unit: facts?.unit ?? unitOf(config.db),
    factsFound: facts !== undefined,
    tables: facts ? Object.keys(expected).length : Object.keys(counts).length,
    rowsCompared: Object.values(facts ? expected : counts).reduce((sum, n) => sum + n, 0),
    mismatches,
    counts,
    durationMs: Math.round(durationMs),
  };
}

// Fails early, with numbers, when the restore would not fit: better than an OOM kill halfway.
async function checkRoom(config: Config, rawBytes: number, storedBytes: number): Promise<void> {
  const parent = config.job.verifyDir ?? (config.toolEnv.TMPDIR || '/tmp');
  const disk = await statfs(parent).catch(() => undefined);
  const needDisk = Math.max(64 * MiB, rawBytes * DISK_FACTOR + storedBytes);
  if (disk && disk.bavail * disk.bsize < needDisk) {
    throw new VerifyUnavailableError(`cannot verify: ${parent} has ${formatBytes(disk.bavail * disk.bsize)} free, the restore needs about ${formatBytes(needDisk)} (set VERIFY_DIR to a larger volume)`);
  }
  const needMemory = config.db.type === 'redis' ? rawBytes * REDIS_MEMORY_FACTOR : config.db.type === 'sqlite' ? 0 : SERVER_MEMORY;
  const memory = await availableMemory();
  if (memory < needMemory) throw new VerifyUnavailableError(`cannot verify: ${formatBytes(memory)} of memory available, the throw-away ${config.db.type} needs about ${formatBytes(needMemory)}`);
}

// Free memory, within the container's cgroup limit when there is one.
async function availableMemory(): Promise<number> {
  const read = (file: string) => readFile(file, 'utf8').then((text) => Number(text.trim()), () => Number.NaN);
  const [max, current] = await Promise.all([read('/sys/fs/cgroup/memory.max'), read('/sys/fs/cgroup/memory.current')]);
  const cgroup = Number.isFinite(max) && Number.isFinite(current) ? max - current : Number.POSITIVE_INFINITY;
  return Math.min(freemem(), cgroup);
}

// The log line of a verification: its verdict and every count.
export function logVerification(log: Logger, verification: VerificationReport): void {
  const { counts, ...summary } = verification;
  const line = `verification ${verification.status}: ${verification.tables} ${verification.unit === 'keys' ? 'keyspaces' : verification.unit === 'databases' ? 'databases' : 'tables'}, ${verification.rowsCompared} ${verification.unit} compared, ${verification.mismatches.length} mismatches`;
  if (verification.status === 'passed') log.info({ verification: summary, counts }, line);
  else log.error({ verification: summary, counts }, line);
}

// The error that a failed comparison ends the run with.
export function verificationFailure(verification: VerificationReport): VerifyError | undefined {
  if (verification.status === 'passed') return undefined;
  const shown = verification.mismatches.slice(0, 5).map((m) => `${m.name}: expected ${m.expected ?? 'absent'}, restored ${m.actual ?? 'absent'}`);
  return new VerifyError(`the restored object differs from the dump: ${shown.join('; ')}${verification.mismatches.length > 5 ? '; …' : ''}`);
}

// Runs one verification of a stored object and returns its report; the exit code is in the report.
export async function runVerify(config: Config, options: RunOptions): Promise<RunReport> {
  const run = startRun(config, 'verify', options);
  let object: ObjectReport | undefined;
  let verification: VerificationReport | undefined;
  let restored: RestoreResult | undefined;
  let failure: unknown;
  try {
    const target = STORAGE_DRIVERS[config.storage.type].open(config.storage, config.storage.settings);
    const key = config.job.restoreKey === 'latest' ? await latestKey(config, target, run.signal) : (config.job.restoreKey ?? '');
    const listed = (await target.list(key, run.signal)).find((found) => found.key === key);
    run.prepared();
    ({ verification, restored } = await verifyObject(config, { target, key, storedBytes: listed?.bytes ?? 0, log: run.log, scrub: run.scrub, signal: run.signal }));
    const where = config.storage.type === 'local' ? `file://${join(config.storage.bucket, key)}` : `${config.storage.type}://${config.storage.bucket}/${key}`;
    object = { storageType: config.storage.type, bucket: config.storage.bucket, key, url: where, ...restored.object };
    logVerification(run.log, verification);
    failure = verificationFailure(verification);
  } catch (error) {
    failure = run.signal.aborted ? run.signal.reason : error;
  }
  return finishRun(config, run, {
    failure, object, verification, rawBytes: restored?.rawBytes ?? 0, tool: restored?.tool ?? { name: 'unknown', version: 'unknown' }, successMessage: 'verification passed',
  });
}
