// DB_TYPE=cassandra: a logical backup of one keyspace through cqlsh, the only tool that can reach a
// cluster from outside its nodes: `DESCRIBE KEYSPACE` for the schema, then `COPY … TO` one CSV per
// table. It is not a node snapshot (nodetool snapshot works on a node's own disk): each table is read
// at the time its COPY runs, at consistency ONE by default, so writes during the dump can make tables
// disagree with each other; large tables take long (COPY pages through every row). cqlsh writes the
// files into the run's private directory; the directory is streamed as a tar archive and removed.
// Restore: `cqlsh -f schema.cql`, then `COPY ks.table FROM 'table.csv' WITH HEADER = true` per table.
import { join } from 'node:path';
import { backupOnly } from './backup-only.ts';
import { quoteIdentifier, quoteLiteral } from './counts.ts';
import { encrypts, type DbConfig, type DumpEngine, type Probe, type SpoolStep } from './types.ts';
import { streamSpool, tarEndCheck } from './spooled.ts';
import { unsafeValues } from './values.ts';

// Seconds cqlsh waits for a connection, and for one request (one page of a COPY).
const CONNECT_TIMEOUT_SECONDS = '30';
const REQUEST_TIMEOUT_SECONDS = '120';

const quoteName = (name: string): string => quoteIdentifier(name, '"');

// Cassandra table names are letters, digits and underscores (at most 222); they become file names in the spool.
const TABLE_NAME = /^\w{1,222}$/;

// Keyspaces of Cassandra itself: DB_NAMES=* leaves them out.
const SYSTEM_KEYSPACES = new Set(['system', 'system_auth', 'system_schema', 'system_distributed', 'system_traces', 'system_views', 'system_virtual_schema']);

// The names in cqlsh's printout of a one-column SELECT (tables, keyspaces): the rows between the
// dashes and the `(N rows)` footer. Throws when the printout is not understood: a table silently
// missed would make an incomplete backup look complete.
export function parseTableNames(stdout: string): string[] {
  const lines = stdout.split('\n').map((line) => line.trim());
  const start = lines.findIndex((line) => /^-+$/.test(line));
  const end = lines.findIndex((line, index) => index > start && /^\(\d+ rows?\)$/.test(line));
  if (start < 0 || end < 0) throw new Error(`cqlsh's table list was not understood: ${JSON.stringify(stdout.slice(0, 200))}`);
  const names = lines.slice(start + 1, end).filter((line) => line !== '');
  const count = Number(/\d+/.exec(lines[end] ?? '')?.[0]);
  const odd = names.find((name) => !TABLE_NAME.test(name));
  if (odd !== undefined) throw new Error(`cqlsh listed ${JSON.stringify(odd)}, which is not a Cassandra table name`);
  if (names.length !== count) throw new Error(`cqlsh said ${count} tables but listed ${names.length}`);
  return names;
}

export const cassandra = {
  tools: () => ['cqlsh'],
  restoreTool: 'cqlsh',
  // Backups only: the job cannot restore or count these (configuration refuses those modes).
  restorer: backupOnly(
    'tar',
    'a keyspace is restored table by table with cqlsh (the schema, then COPY … FROM per CSV file, docs/databases.md)',
    'the job has no throw-away Cassandra node to restore into (a JVM of 1 GiB or more, not started by the job)',
  ),
  scratch: 'the job starts no throw-away Cassandra node',
  defaultPort: 9042,
  extension: () => '.tar',

  validate(db) {
    const problems: string[] = [];
    if (!db.host) problems.push('DB_HOST is required for cassandra');
    if (!db.name) problems.push('DB_NAME is required for cassandra: the keyspace to back up');
    if (db.allDatabases) problems.push('DB_ALL_DATABASES is not supported for cassandra: run one job per keyspace');
    if (db.password !== undefined && (/[\r\n]/.test(db.password) || db.password.trim() !== db.password)) {
      problems.push('DB_PASSWORD for cassandra cannot hold line breaks or leading or trailing spaces (cqlsh reads it from an ini file)');
    }
    return [...unsafeValues(db), ...problems];
  },

  command(db, { secretsDir, tool }) {
    const cqlshrc = join(secretsDir, 'cqlshrc');
    const path = join(secretsDir, 'dump');
    const keyspace = db.name ?? '';
    const cqlsh = (statement: string, extra: Partial<SpoolStep> = {}): SpoolStep => ({ ...cqlshCommand(db, tool, cqlshrc, statement, db.extraArgs), ...extra });
    const copy = (table: string) => cqlsh(`COPY ${quoteName(keyspace)}.${quoteName(table)} TO ${quoteLiteral(join(path, `${table}.csv`))} WITH HEADER = true`);
    const spool = {
      path,
      kind: 'directory',
      steps: [
        cqlsh(`DESCRIBE KEYSPACE ${quoteName(keyspace)}`, { stdoutTo: join(path, 'schema.cql') }),
        cqlsh(`SELECT table_name FROM system_schema.tables WHERE keyspace_name = ${quoteLiteral(keyspace)}`, {
          then: (stdout: string) => parseTableNames(stdout).map(copy),
        }),
      ],
    } as const;
    return { ...streamSpool(spool), env: {}, files: [{ path: cqlshrc, content: cqlshrcFile(db) }], spool };
  },

  discover: (db) =>
    cqlshQuery(db, 'system_schema.keyspaces', 'SELECT keyspace_name FROM system_schema.keyspaces', (stdout) => parseTableNames(stdout).filter((name) => !SYSTEM_KEYSPACES.has(name))),

  // Cassandra's own estimate for the keyspace (partitions × mean partition size), from the node cqlsh
  // reaches: that node's token ranges only, so on a cluster of several nodes it is a share of the
  // whole; BACKUP_EXPECTED_SIZE sets the plan instead.
  size: (db) =>
    cqlshQuery(
      db,
      'system.size_estimates',
      `SELECT mean_partition_size, partitions_count FROM system.size_estimates WHERE keyspace_name = ${quoteLiteral(db.name ?? '')}`,
      parseSizeEstimates,
    ),

  // Every cqlsh step exited 0; the archive made afterwards must be whole.
  completeness: () => tarEndCheck(),

  classify(stderr) {
    if (/AuthenticationFailed|Bad credentials|Unauthorized|Provided username .* incorrect/i.test(stderr)) return 'auth';
    if (/Unable to connect|Connection refused|NoHostAvailable|timed out|Name or service not known/i.test(stderr)) return 'unreachable';
    return 'failed';
  },
} satisfies DumpEngine;

// cqlsh running one statement against the node `db` names; credentials in the cqlshrc.
function cqlshCommand(db: DbConfig, tool: string, cqlshrc: string, statement: string, extraArgs: readonly string[]): SpoolStep {
  const tls = encrypts(db);
  return {
    file: tool,
    args: [
      `--cqlshrc=${cqlshrc}`,
      ...(tls ? ['--ssl'] : []),
      `--connect-timeout=${CONNECT_TIMEOUT_SECONDS}`,
      `--request-timeout=${REQUEST_TIMEOUT_SECONDS}`,
      ...extraArgs,
      '-e', statement,
      db.host ?? '', String(db.port ?? 9042),
    ],
    env: {},
  };
}

function cqlshQuery<T>(db: DbConfig, what: string, statement: string, parse: (stdout: string) => T): Probe<T> {
  return {
    what,
    tools: ['cqlsh'],
    command: ({ secretsDir, tool }) => {
      const cqlshrc = join(secretsDir, 'cqlshrc');
      return { ...cqlshCommand(db, tool, cqlshrc, statement, []), files: [{ path: cqlshrc, content: cqlshrcFile(db) }] };
    },
    parse,
  };
}

// The rows `mean_partition_size | partitions_count` of system.size_estimates, summed as bytes.
function parseSizeEstimates(stdout: string): number {
  const rows = stdout.split('\n').map((line) => /^\s*(\d+)\s*\|\s*(\d+)\s*$/.exec(line)).filter((match) => match !== null);
  if (!/\(\d+ rows?\)/.test(stdout)) throw new Error(`cqlsh's size estimates were not understood: ${JSON.stringify(stdout.slice(0, 200))}`);
  return rows.reduce((total, match) => total + Number(match[1]) * Number(match[2]), 0);
}

// cqlsh reads the credentials (and TLS settings) from its cqlshrc, an ini file read without interpolation.
function cqlshrcFile(db: DbConfig): string {
  const lines = ['[authentication]'];
  if (db.username !== undefined) lines.push(`username = ${db.username}`);
  if (db.password !== undefined) lines.push(`password = ${db.password}`);
  if (encrypts(db)) {
    lines.push('[ssl]', `validate = ${db.tls === 'require' ? 'false' : 'true'}`, ...(db.tlsCaFile ? [`certfile = ${db.tlsCaFile}`] : []));
  }
  return `${lines.join('\n')}\n`;
}
