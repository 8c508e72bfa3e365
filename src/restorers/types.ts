// What every database engine provides to restore a dump and to count what a database holds. One file
// per DB_TYPE implements it; registry.ts lists them. The commands are pure, like the dump commands.
import type { DbConfig, DumpCommand } from '../engines/types.ts';

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
