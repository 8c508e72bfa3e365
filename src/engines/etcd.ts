// DB_TYPE=etcd: `etcdctl snapshot save`, the server's own consistent snapshot of the whole keyspace.
// etcdctl writes it only to a file (it fsyncs and renames a `.part` file, so a pipe will not do): the
// file goes into the run's private 0700 directory, is streamed from there and removed with it.
// Restore: `etcdutl snapshot restore backup.db --data-dir NEW` (etcd 3.4: `etcdctl snapshot restore`).
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { execa } from 'execa';
import { DumpError } from '../errors.ts';
import { base, launch, need, readyOrKilled, stopProcess, tail, type Scratch, type ScratchSetup } from '../scratch.ts';
import { requireTool } from './counts.ts';
import { streamSpool } from './spooled.ts';
import { encrypts, type CompletenessCheck, type Counts, type DbConfig, type DumpCommand, type DumpEngine, type Restorer } from './types.ts';
import { unsafeValues } from './values.ts';

// etcdctl applies its --command-timeout (5 s by default) to the whole snapshot transfer, which a
// database of a few GiB outlasts; the job's own deadline (BACKUP_TIMEOUT) and SIGTERM bound it instead.
const SNAPSHOT_TIMEOUT = '24h';
// How long etcdctl waits for a connection before it reports the server unreachable.
const DIAL_TIMEOUT = '10s';
// The server appends the SHA-256 of the snapshot to it; etcdutl restore checks it.
const SHA256_BYTES = 32;
// bbolt writes whole pages: without the hash, a snapshot is a multiple of this.
const HASHED_SIZE_MODULUS = 512;

function endpoint(db: DbConfig): string {
  // A socket path (a throw-away member of the job's own): etcd's unix URLs name a file, host:port form.
  if (db.host?.startsWith('/')) return `unix://${db.host}`;
  const tls = encrypts(db);
  const host = db.host?.includes(':') ? `[${db.host}]` : (db.host ?? '');
  return `${tls ? 'https' : 'http'}://${host}:${db.port ?? 2379}`;
}

// etcdctl reads every flag from ETCDCTL_<FLAG> too: the user and password never appear in argv.
// ETCDCTL_API=3 makes etcd 3.4's etcdctl speak the v3 API (3.5 does by default).
function credentials(db: DbConfig): Record<string, string> {
  return {
    ETCDCTL_API: '3',
    ...(db.username !== undefined && { ETCDCTL_USER: db.username }),
    ...(db.password !== undefined && { ETCDCTL_PASSWORD: db.password }),
  };
}

// A short etcdctl request against the member `db` names (DB_HOST may be a unix:// socket path).
function etcdctl(db: DbConfig, tool: string, args: readonly string[]): DumpCommand {
  const tls = encrypts(db);
  return {
    file: tool,
    args: [
      `--endpoints=${endpoint(db)}`,
      `--dial-timeout=${DIAL_TIMEOUT}`,
      ...(tls && db.tls === 'require' ? ['--insecure-skip-tls-verify=true'] : []),
      ...(db.tlsCaFile ? [`--cacert=${db.tlsCaFile}`] : []),
      ...args,
    ],
    env: credentials(db),
    files: [],
  };
}

// `endpoint status --write-out=json`: one entry per endpoint, each with Status.dbSize in bytes.
function parseDbSize(stdout: string): number {
  const parsed = JSON.parse(stdout) as { Status?: { dbSize?: unknown } }[];
  const size = Array.isArray(parsed) ? parsed[0]?.Status?.dbSize : undefined;
  if (typeof size !== 'number' || !Number.isSafeInteger(size) || size < 0) throw new Error(`no dbSize in ${JSON.stringify(stdout.slice(0, 200))}`);
  return size;
}

// The snapshot file inside the private directory.
function snapshotPath(secretsDir: string): string {
  return join(secretsDir, 'snapshot.db');
}

// `get "" --prefix --keys-only --limit=1 --write-out=json`: the header's `count` is every key.
export function parseKeyCount(stdout: string): Counts {
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    throw new DumpError(`could not read etcdctl's key count: ${stdout.slice(0, 200)}`, { kind: 'failed', stage: 'restore' });
  }
  // An empty keyspace answers without a count.
  const count = (parsed as { count?: unknown }).count ?? 0;
  if (typeof count !== 'number' || !Number.isSafeInteger(count) || count < 0) throw new DumpError('etcdctl gave no key count', { kind: 'failed', stage: 'restore' });
  return { keys: count };
}

// A snapshot is restored into a new member's data directory, never into a running member:
// `etcdutl snapshot restore` (etcd 3.4: `etcdctl snapshot restore`) reads the file, checks the SHA-256
// it ends with, and writes RESTORE_DATA_DIR, which must not exist yet. An etcd started on that
// directory serves the keyspace. Counts are the keys of the whole keyspace.
const restorer = {
  formats: ['snapshot'],
  input: 'file',
  tools: () => ['etcdutl', 'etcdctl'],

  command(db, { tool, dumpFile, into }) {
    // DB_EXTRA_ARGS go to the restore (--name, --initial-cluster, … for a member of several).
    return { file: tool, args: ['snapshot', 'restore', dumpFile ?? '', `--data-dir=${into ?? ''}`, ...db.extraArgs], env: { ETCDCTL_API: '3' }, files: [] };
  },

  async count(db, { path, query }) {
    const tool = requireTool(['etcdctl'], path, 'count the keys of an etcd member');
    return parseKeyCount(await query(etcdctl(db, tool, ['get', '', '--prefix', '--keys-only', '--limit=1', '--write-out=json'])));
  },
} satisfies Restorer;

export const etcd = {
  tools: () => ['etcdctl'],
  restorer,
  scratch: { binaries: ['etcd'], runsAsRoot: true, start: startScratchServer },
  restoreTool: 'etcdutl',
  // etcdctl and etcdutl have a `version` command and no --version flag.
  versionArgs: ['version'],
  defaultPort: 2379,
  extension: () => '.db',

  validate(db) {
    const problems: string[] = [];
    if (!db.host) problems.push('DB_HOST is required for etcd');
    if (db.name !== undefined) problems.push('DB_NAME does not apply to etcd: a snapshot holds the whole keyspace');
    if (db.allDatabases) problems.push('DB_ALL_DATABASES does not apply to etcd: a snapshot holds the whole keyspace');
    if (db.username !== undefined && db.password === undefined) problems.push('DB_PASSWORD (or DB_PASSWORD_FILE) is required with DB_USERNAME for etcd: etcdctl would prompt for it');
    if (db.password !== undefined && db.username === undefined) problems.push('DB_USERNAME is required with DB_PASSWORD for etcd');
    if (db.username?.includes(':')) problems.push('DB_USERNAME for etcd cannot contain ":" (etcdctl reads user:password)');
    return [...unsafeValues(db), ...problems];
  },

  command(db, { secretsDir, tool }) {
    const path = snapshotPath(secretsDir);
    const { args, env } = etcdctl(db, tool, [`--command-timeout=${SNAPSHOT_TIMEOUT}`, ...db.extraArgs, 'snapshot', 'save', path]);
    const spool = { path, kind: 'file', steps: [{ file: tool, args, env }] } as const;
    return { ...streamSpool(spool), env: {}, files: [], spool };
  },

  namesUnsupported: 'a snapshot always holds the whole keyspace, so DB_NAMES would store the same snapshot once per name',

  // The size of the member's bolt database file: what a snapshot copies, free pages included.
  size: (db) => ({
    what: 'endpoint status dbSize',
    tools: ['etcdctl'],
    command: ({ tool }) => etcdctl(db, tool, ['endpoint', 'status', '--write-out=json']),
    parse: parseDbSize,
  }),

  completeness: () => snapshotHashCheck(),

  classify(stderr) {
    if (/authentication failed|invalid auth token|permission denied|user name is empty|user name not found|auth: /i.test(stderr)) return 'auth';
    if (/connection refused|context deadline exceeded|no such host|i\/o timeout|transport: Error while dialing|DeadlineExceeded|Unavailable/i.test(stderr)) return 'unreachable';
    return 'failed';
  },
} satisfies DumpEngine;

// The completeness mark of an etcd snapshot: its last 32 bytes are the SHA-256 of everything before
// them (what `etcdutl snapshot restore` checks unless told --skip-hash-check). Checked on the stream
// in constant memory: a hash of all but the last 32 bytes seen so far, and those 32 bytes held back.
export function snapshotHashCheck(): CompletenessCheck {
  const hash = createHash('sha256');
  let held = Buffer.alloc(0);
  let total = 0;
  let result: { reason: string | undefined } | undefined;
  const judge = (): string | undefined => {
    if (total % HASHED_SIZE_MODULUS !== SHA256_BYTES) {
      return `the etcd snapshot is ${total} bytes, not whole bolt pages plus a 32-byte SHA-256: truncated, or saved without its hash`;
    }
    const actual = hash.digest();
    if (!actual.equals(held)) return `the etcd snapshot's SHA-256 (${actual.toString('hex').slice(0, 16)}…) does not match the hash it ends with: the snapshot is corrupt`;
    return undefined;
  };
  return {
    scope: 'stream',
    write(chunk) {
      total += chunk.length;
      if (chunk.length < SHA256_BYTES) {
        // A short chunk: join it to the held bytes (at most 63 bytes are copied).
        const joined = Buffer.concat([held, chunk]);
        const cut = Math.max(0, joined.length - SHA256_BYTES);
        if (cut > 0) hash.update(joined.subarray(0, cut));
        held = Buffer.from(joined.subarray(cut));
        return;
      }
      // Everything held is followed by at least 32 new bytes, so it is hashed; the chunk is not copied.
      if (held.length > 0) hash.update(held);
      hash.update(chunk.subarray(0, chunk.length - SHA256_BYTES));
      held = Buffer.from(chunk.subarray(chunk.length - SHA256_BYTES));
    },
    verdict() {
      result ??= { reason: judge() };
      return result.reason;
    },
  };
}

// etcd on the data directory the restore wrote into `dir`/data: client and peer traffic on unix
// sockets inside `dir` (etcd's unix URLs name a file in its working directory, in host:port form).
// The snapshot carries the source's users and auth setting: the source's credentials count its keys.
function startScratchServer(source: DbConfig, { server, dir, options, logFile, remove }: ScratchSetup): Scratch {
  const cli = need(['etcdctl'], options.path);
  const client = 'client.sock:1';
  const db: DbConfig = { ...base('etcd'), host: join(dir, client), username: source.username, password: source.password };
  let proc: ReturnType<typeof launch> | undefined;
  return {
    db,
    dir,
    logTail: () => tail(logFile),
    start: async () => {
      // The restore names the member `default` (etcdutl's default); its peer URL is never dialled alone.
      const args = ['--name=default', `--data-dir=${join(dir, 'data')}`, `--listen-client-urls=unix://${client}`, `--advertise-client-urls=unix://${client}`, '--listen-peer-urls=unix://peer.sock:2'];
      proc = launch(server, args, undefined, dir, logFile);
      await readyOrKilled('the throw-away etcd', proc, logFile, async () => {
        const health = [`--endpoints=unix://${db.host ?? ''}`, '--dial-timeout=2s', 'endpoint', 'health'];
        const answer = await execa(cli, health, { reject: false, env: { PATH: options.path, ...credentials(db) }, extendEnv: false, timeout: 10_000 });
        return answer.exitCode === 0;
      });
    },
    stop: async () => {
      await stopProcess(proc, 'SIGTERM');
      await remove();
    },
  };
}
