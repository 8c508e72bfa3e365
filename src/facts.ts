// Facts about a dump, captured while it is taken, to compare a restore with: rows per table (SQL
// engines) or keys per database (Redis). They travel as a small sidecar object `<key>.facts.json`
// (`<key>.facts.json.age`, encrypted to the same recipients, beside an encrypted object),
// written only after the backup object itself is complete (object metadata is too small for a
// database of many tables). A backup whose sidecar could not be written is still a complete backup;
// its later verification restores it and says that nothing could be compared.
//
// Consistency: PostgreSQL counts are exact. They are taken in a REPEATABLE READ transaction whose
// snapshot pg_dump imports (--snapshot), so both see the same rows. MySQL/MariaDB, SQLite and Redis
// counts are taken in their own consistent read just before the dump starts: they match the dump
// exactly when nothing writes to the database in between (a busy database can show a mismatch).
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { Readable } from 'node:stream';
import type { Config } from './config.ts';
import type { Scrub } from './dump.ts';
import type { Counts, DbConfig, DumpCommand } from './engines/types.ts';
import { DumpError } from './errors.ts';
import { createAgeDecryptor, ENCRYPTED_EXTENSION, startEncryptor, throughAge } from './pipeline/encrypt.ts';
import type { Logger } from './log.ts';
import { identityRequired, queryRunner, FACTS_SUFFIX } from './restore.ts';
import { parseCounts, requireTool } from './engines/counts.ts';
import { connectionArgs, COUNT_ROWS_SQL, libpqCredentials, PSQL_QUIET_FLAGS } from './engines/postgresql.ts';
import { ENGINES } from './engines/registry.ts';
import type { StorageTarget } from './storage/types.ts';

// The sidecar of a database of 100,000 tables is ~5 MB; anything larger is not ours.
const MAX_FACTS_BYTES = 32 * 1024 * 1024;
// How long the snapshot session may take to answer (connect, export) before the backup gives up.
const SNAPSHOT_TIMEOUT_MS = 60_000;

// What the sidecar holds.
export type Facts = {
  format: 'planb-facts/1';
  runId: string;
  dbType: string;
  capturedAt: string;
  // `snapshot`: exactly what the dump holds; `before-dump`: a moment just before it (see above).
  consistency: 'snapshot' | 'before-dump';
  unit: 'rows' | 'keys' | 'databases';
  counts: Counts;
  // Bytes the dump tool wrote: sizes a verification's disk check.
  rawBytes: number;
};

// The key of an object's facts. An encrypted object's facts are encrypted to the same recipients
// (`.age` last, as on the object): table names and row counts say what the database holds.
export function factsKey(key: string): string {
  return key.endsWith(ENCRYPTED_EXTENSION) ? `${key}${FACTS_SUFFIX}${ENCRYPTED_EXTENSION}` : `${key}${FACTS_SUFFIX}`;
}

// Facts being captured for one backup: `command` is the dump command to run (with the snapshot).
export type FactsCapture = {
  command: DumpCommand;
  counts: Promise<{ counts: Counts; consistency: Facts['consistency'] }>;
  // Ends the snapshot transaction (after the dump tool exited).
  close(): Promise<void>;
};

export function unitOf(db: DbConfig): Facts['unit'] {
  if (db.type === 'redis' || db.type === 'etcd') return 'keys';
  return db.allDatabases ? 'databases' : 'rows';
}

// Starts capturing the facts of the dump `command` is about to take.
export async function captureFacts(config: Config, command: DumpCommand, context: { secretsDir: string; log: Logger; scrub: Scrub; signal: AbortSignal }): Promise<FactsCapture> {
  const { db } = config;
  if (db.type === 'postgresql' && !db.allDatabases) return snapshotSession(config, command, context);
  const query = queryRunner(db.type, config.toolEnv, context.log, context.scrub, context.signal);
  const counts = await ENGINES[db.type].restorer.count(db, { secretsDir: context.secretsDir, path: config.toolEnv.PATH ?? '', query });
  return { command, counts: Promise.resolve({ counts, consistency: 'before-dump' }), close: () => Promise.resolve() };
}

// A psql session holding a REPEATABLE READ transaction open: it exports its snapshot for pg_dump and
// counts every table in it, while pg_dump runs.
async function snapshotSession(config: Config, command: DumpCommand, context: { secretsDir: string; log: Logger; scrub: Scrub; signal: AbortSignal }): Promise<FactsCapture> {
  const { db } = config;
  const psql = requireTool(['psql'], config.toolEnv.PATH ?? '', 'capture row counts in the dump\'s snapshot');
  const credentials = libpqCredentials(db, context.secretsDir);
  const args = [...PSQL_QUIET_FLAGS, ...connectionArgs(db, db.name)];
  const child = spawn(psql, args, { env: { ...config.toolEnv, ...credentials.env, PGAPPNAME: 'planb-facts' }, stdio: ['pipe', 'pipe', 'pipe'], signal: context.signal });
  child.on('error', () => undefined); // reported through `exited`
  const stderr: string[] = [];
  createInterface({ input: child.stderr }).on('line', (line) => stderr.push(context.scrub(line)));
  const lines = createInterface({ input: child.stdout });
  const waiting: ((line: string | undefined) => void)[] = [];
  const buffered: string[] = [];
  lines.on('line', (line) => (waiting.shift() ?? ((l: string) => buffered.push(l)))(line));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  void exited.then(() => {
    for (const wake of waiting.splice(0)) wake(undefined);
  });
  const failure = () => new DumpError(`psql (row counts in the dump's snapshot) failed: ${stderr.slice(-5).join('\n') || 'no answer'}`, {
    kind: ENGINES.postgresql.classify(stderr.join('\n')), stderrTail: stderr.slice(-5).join('\n'),
  });
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(failure()), SNAPSHOT_TIMEOUT_MS);
      const take = (line: string | undefined) => {
        clearTimeout(timer);
        if (line === undefined) reject(failure());
        else resolve(line);
      };
      const ready = buffered.shift();
      if (ready !== undefined) take(ready);
      else waiting.push(take);
    });
  child.stdin.on('error', () => undefined); // psql gone: nextLine reports why
  child.stdin.write('BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY;\nSELECT pg_export_snapshot();\n');
  let snapshot: string;
  try {
    snapshot = (await nextLine()).trim();
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  child.stdin.write(`${COUNT_ROWS_SQL};\n`);
  const counts = nextLine().then((line) => ({ counts: parseCounts(line, 'table'), consistency: 'snapshot' as const }));
  counts.catch(() => undefined); // awaited by the caller; a failure must not go unhandled before that
  context.log.info({ snapshot }, 'row counts are taken in the snapshot pg_dump uses');
  return {
    command: { ...command, args: [...command.args, `--snapshot=${snapshot}`] },
    counts,
    close: async () => {
      child.stdin.end('COMMIT;\n');
      await exited;
    },
  };
}

// Writes the sidecar after the backup object is stored; `encryption` (the backup's, which made `key`
// end in .age) seals it.
export async function storeFacts(
  target: StorageTarget,
  key: string,
  facts: Facts,
  context: { log: Logger; signal: AbortSignal; encryption: { recipients: readonly string[]; path: string } | undefined },
): Promise<void> {
  const json = Buffer.from(`${JSON.stringify(facts)}\n`);
  const { encryption } = context;
  const bytes = encryption ? await throughAge(startEncryptor(encryption.recipients, encryption.path), json) : json;
  await target.upload({
    key: factsKey(key), body: Readable.from([bytes]), signal: context.signal, contentType: encryption ? 'application/octet-stream' : 'application/json',
    metadata: { 'planb-run-id': facts.runId }, sizeHint: undefined, log: context.log,
  });
}

// Reads an object's facts; undefined when it has none. An encrypted object's facts are opened with
// `decrypt.identityFile`; a plain sidecar beside an encrypted object (as written before facts were
// encrypted) is read as it is.
export async function loadFacts(target: StorageTarget, key: string, context: { signal: AbortSignal; decrypt: { identityFile: string | undefined; path: string } }): Promise<Facts | undefined> {
  const { identityFile, path } = context.decrypt;
  const encrypted = key.endsWith(ENCRYPTED_EXTENSION);
  // Refused before anything is read: the object itself cannot be restored without it either.
  if (encrypted && identityFile === undefined) throw identityRequired(key);
  const candidates = encrypted ? [factsKey(key), `${key}${FACTS_SUFFIX}`] : [factsKey(key)];
  for (const candidate of candidates) {
    const stored = await download(target, candidate, context.signal);
    if (stored === undefined) continue;
    const bytes = candidate.endsWith(ENCRYPTED_EXTENSION) && identityFile !== undefined ? await throughAge(createAgeDecryptor(identityFile, path), stored) : stored;
    const facts = JSON.parse(bytes.toString('utf8')) as Facts;
    if (facts.format !== 'planb-facts/1' || typeof facts.counts !== 'object') throw new DumpError(`${candidate} is not a Plan B facts file`, { kind: 'failed', stage: 'restore' });
    return facts;
  }
  return undefined;
}

// A sidecar's bytes (at most MAX_FACTS_BYTES), or undefined when there is no such object.
async function download(target: StorageTarget, key: string, signal: AbortSignal): Promise<Buffer | undefined> {
  let stream: Readable;
  try {
    stream = await target.download(key, signal);
  } catch (error) {
    if ((error as { kind?: unknown }).kind === 'missing') return undefined;
    throw error;
  }
  const chunks: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of stream) {
    bytes += (chunk as Buffer).length;
    if (bytes > MAX_FACTS_BYTES) throw new DumpError(`${key} is larger than ${MAX_FACTS_BYTES} bytes: not a facts file`, { kind: 'failed', stage: 'restore' });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
