// What every database engine provides: dump, restore, count and a throw-away server to verify in.
// One file per DB_TYPE implements it; registry.ts lists them.
import type { ScratchServer } from '../scratch.ts';
import type { CompletenessCheck } from './marks.ts';
import type { DbType } from './registry.ts';

export type { CompletenessCheck } from './marks.ts';
export type { DbType } from './registry.ts';

// The DB_* settings an engine turns into a dump command (see config.ts for where each comes from).
export type DbConfig = {
  type: DbType;
  host: string | undefined;
  port: number | undefined;
  name: string | undefined;
  username: string | undefined;
  password: string | undefined;
  tls: TlsMode | undefined;
  tlsCaFile: string | undefined;
  allDatabases: boolean;
  extraArgs: readonly string[];
  // sqlite: run `PRAGMA quick_check` before the dump (DB_SQLITE_QUICK_CHECK).
  sqliteQuickCheck: boolean;
};

// DB_TLS, in libpq's words; each engine maps them onto its own tool's flags.
export const TLS_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'] as const;
export type TlsMode = (typeof TLS_MODES)[number];
// Whether DB_TLS asks for an encrypted connection (require, verify-ca, verify-full); with `prefer`
// the tool keeps its own default.
export function encrypts(db: Pick<DbConfig, 'tls'>): boolean {
  return db.tls !== undefined && db.tls !== 'disable' && db.tls !== 'prefer';
}

// How the compression stage after the dump is set; the engine may adapt its own flags to it.
export type Compression = 'zstd' | 'gzip' | 'none';

// A credential file the run writes (mode 0600, in a private temp dir) before starting the tool.
export type CredentialFile = { path: string; content: string };

// Everything needed to start the dump tool. Secrets live only in `env` and `files`, never in `args`.
// For a tool that cannot write to stdout, `spool` runs first and `file`/`args` then stream what it wrote.
export type DumpCommand = {
  file: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  files: readonly CredentialFile[];
  spool?: Spool;
};

// A dump written to disk before it is streamed: etcdctl writes a file, arangodump a directory, SQL
// Server's BACKUP a file the server writes. `path` is inside the run's private directory
// (CommandContext.secretsDir), so it goes with that directory on every exit path. The run checks free
// space at `path`'s parent first, runs `steps` in order (each must exit 0), logs the size and streams
// it with the command.
export type Spool = { path: string; kind: 'file' | 'directory'; steps: readonly SpoolStep[] };

// One command of a spool. Its stdout goes to `stdoutTo` (a file in the spool) when set; otherwise it is
// kept (bounded) for `then`, which may derive further steps from it (Cassandra lists its tables so).
export type SpoolStep = {
  file: string;
  args: readonly string[];
  env: Readonly<Record<string, string>>;
  stdoutTo?: string;
  then?: (stdout: string) => readonly SpoolStep[];
};

// Inputs a command needs besides the settings: where credential files go, which binary was found.
export type CommandContext = { secretsDir: string; tool: string; compression: Compression };

// Inputs a probe's command needs: where credential files go, which binary was found.
export type ProbeContext = { secretsDir: string; tool: string };

// A short read-only query run with the dump's own credentials (files and env, never argv), and how
// to read its answer. Pure, like `command`: the runner (probe.ts) finds the tool and runs it.
export type Probe<T> = {
  // What it asks, for log lines and errors: `pg_database_size`, `SHOW DATABASES`.
  what: string;
  // Binaries that can run it, best first.
  tools: readonly string[];
  command(context: ProbeContext): DumpCommand;
  // Reads the tool's stdout; throws when the answer is not what the query returns.
  parse(stdout: string): T;
};

// A DB_TYPE: its tools, its defaults and a pure function from settings to the dump command.
export type DumpEngine = {
  // Binaries that can dump with these settings, best first; the first one on PATH is used.
  tools(db: DbConfig): readonly string[];
  // Tool that restores the dump, checked in the image build and named in docs/databases.md.
  restoreTool: string;
  // How JOB_MODE=restore loads a dump and how counts (facts, verification) are read.
  restorer: Restorer;
  // The throw-away server a verification restores into (src/scratch.ts runs it), or why there is none.
  scratch: ScratchServer | string;
  // How the tools print their version, when not with --version.
  versionArgs?: readonly string[];
  defaultPort: number | undefined;
  // File extension of the raw dump, before compression adds its own.
  extension(db: DbConfig): string;
  // Problems with the DB_* settings for this engine (each names its variable); empty when fine.
  validate(db: DbConfig): string[];
  // Pure: the same settings and context always give the same command.
  command(db: DbConfig, context: CommandContext): DumpCommand;
  // DB_NAMES=*: lists every database this user can dump, leaving out templates and system databases.
  // Absent when the engine has no server to ask; then DB_NAMES must name them.
  discover?(db: DbConfig): Probe<string[]>;
  // Why DB_NAMES cannot apply to this engine at all; absent when each name can be dumped on its own.
  namesUnsupported?: string;
  // The database's own size from its statistics, in bytes: sizes the upload's parts without a hint.
  size(db: DbConfig): Probe<number>;
  // Reads the tool's stderr after a failure: could it not connect, was it refused, was the request
  // itself wrong (no such database, an unknown option: no retry helps), or something else?
  classify(stderr: string): 'unreachable' | 'auth' | 'invalid' | 'failed';
  // A fresh check of the raw dump for the tool's own marks of a complete dump (one per run).
  completeness(db: DbConfig): CompletenessCheck;
  // Cheap read-only questions before the dump; a problem stops the run before anything is stored.
  preflight?(db: DbConfig, context: PreflightContext): Promise<PreflightProblem | undefined>;
};

// What a tool answered: its exit code (undefined when it could not start) and its output.
export type ToolAnswer = { exitCode: number | undefined; stdout: string; stderr: string };

// What a preflight may do, given by the run: engines stay free of process effects.
export type PreflightContext = CommandContext & {
  // Runs a short command (its credential files written and removed around it) and returns its answer.
  ask(command: DumpCommand): Promise<ToolAnswer>;
  // The first `bytes` bytes of a file, or the error code (ENOENT, EACCES, …) that kept it from being read.
  readHead(path: string, bytes: number): Promise<Buffer | string>;
  // The first of `names` on PATH, as a path, or undefined.
  which(names: readonly string[]): string | undefined;
  // Notes a preflight that could not run (a missing client, say); the dump goes ahead.
  skipped(reason: string): void;
};

// Why the dump must not run; `kind` decides the exit code (auth → DB_AUTH, invalid → DB_INVALID, failed → DUMP_FAILED).
export type PreflightProblem = { kind: 'auth' | 'unreachable' | 'invalid' | 'failed'; message: string };

// What a stored object holds, told by its key (before the compression suffix).
export const DUMP_FORMATS = {
  '.dump': 'custom', '.sql': 'sql', '.rdb': 'rdb', '.archive': 'archive', '.db': 'snapshot', '.tar': 'tar', '.bak': 'bak',
} as const;
export type DumpFormat = (typeof DUMP_FORMATS)[keyof typeof DUMP_FORMATS];

// Rows per table (`schema.table`, or `db.table` across databases) or keys per Redis database (`db0`).
export type Counts = Record<string, number>;

// Inputs a restore command needs besides the settings.
export type RestoreContext = {
  secretsDir: string;
  tool: string;
  format: DumpFormat;
  // RESTORE_FORCE: the target may already hold objects; replace what the dump holds.
  force: boolean;
  // A throw-away server of the job's own: ownership and grants of the source cannot apply there.
  scratch: boolean;
  // For a restorer whose tool reads a file (`input: 'file'`): the raw dump, written there first.
  dumpFile?: string | undefined;
  // Where a restore that makes files puts them (an etcd member's new data directory).
  into?: string | undefined;
};

// Runs one command and returns its stdout; the command's failure rejects (a DumpError of stage restore).
export type RunQuery = (command: DumpCommand) => Promise<string>;

// Inputs of a counting run.
export type CountContext = { secretsDir: string; path: string; query: RunQuery };

// How an engine restores its dumps and counts what a database holds; the commands are pure, like the dump's.
export type Restorer = {
  // Binaries that restore this format, best first; the first one on PATH is used.
  tools(db: DbConfig, format: DumpFormat): readonly string[];
  // The formats this engine's dumps come in.
  formats: readonly DumpFormat[];
  // How the tool takes the dump: on stdin (the default), or as a file the restore writes first
  // (`dumpFile`) because the tool reads it from disk (an etcd snapshot).
  input?: 'stdin' | 'file';
  // Why JOB_MODE=restore cannot run for this engine (refused at configuration); absent when it can.
  restoreUnsupported?: string;
  // Why counts (BACKUP_FACTS, verification) cannot run for this engine (refused at configuration).
  countUnsupported?: string;
  // Pure: the command that reads the raw dump (stdin, or `dumpFile`) and loads it into the database `db` names;
  // undefined when the dump itself is the restored file (a Redis RDB is written where a server loads it).
  command(db: DbConfig, context: RestoreContext): DumpCommand | undefined;
  // For a tool that carries on after a failed statement and exits 0 anyway: which stderr lines are
  // errors, and which of those are expected (they then do not fail the restore).
  errorLines?: (format: DumpFormat) => { match: RegExp; benign: RegExp } | undefined;
  // What the database `db` names holds now: every table (with its rows) or every non-empty keyspace.
  // Used to refuse a non-empty restore target, to capture facts at dump time and to verify.
  count(db: DbConfig, context: CountContext): Promise<Counts>;
};
