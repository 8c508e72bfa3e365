// DB_TYPE=mssql: `BACKUP DATABASE … WITH COPY_ONLY, CHECKSUM` through sqlcmd, then `RESTORE
// VERIFYONLY … WITH CHECKSUM`. SQL Server writes a backup itself, on its own filesystem; no client tool
// receives it as a stream. The backup goes into the run's private directory, which the server must
// see at the same path (TMPDIR on a volume both containers mount, the server running as the same
// uid); the job then streams the file and removes it. Restore: `RESTORE DATABASE [name] FROM DISK = N'…'`.
import { join } from 'node:path';
import { backupOnly } from './backup-only.ts';
import { lines, wholeNumber } from './answers.ts';
import { quoteLiteral } from './counts.ts';
import { edgeCheck } from './marks.ts';
import { streamSpool } from './spooled.ts';
import type { CompletenessCheck, DbConfig, DumpEngine, Probe } from './types.ts';
import { unsafeValues } from './values.ts';

// Seconds sqlcmd waits to log in before it reports the server unreachable.
const LOGIN_TIMEOUT_SECONDS = '30';

const quoteName = (name: string): string => `[${name.replaceAll(']', ']]')}]`;
const quoteString = (text: string): string => `N${quoteLiteral(text)}`;

// sqlcmd's connection arguments; the password travels in SQLCMDPASSWORD.
function connection(db: DbConfig): string[] {
  return [
    '-S', `tcp:${db.host ?? ''},${db.port ?? 1433}`,
    ...(db.username ? ['-U', db.username] : []),
    // ODBC Driver 18 encrypts and verifies by default; `require` keeps encryption and trusts the certificate.
    ...(db.tls === 'disable' || db.tls === 'prefer' ? ['-N', 'o'] : []),
    ...(db.tls === 'require' ? ['-C'] : []),
    '-l', LOGIN_TIMEOUT_SECONDS,
    '-b', // exit non-zero when a statement fails
    '-d', 'master',
  ];
}

// sqlcmd reads the password from SQLCMDPASSWORD, so it never appears in argv.
function passwordEnv(db: DbConfig): Record<string, string> {
  return db.password === undefined ? {} : { SQLCMDPASSWORD: db.password };
}

// One query through sqlcmd, answered without headers, row counts or padding (`-h -1 -W`).
function sqlcmdQuery<T>(db: DbConfig, what: string, query: string, parse: (stdout: string) => T): Probe<T> {
  return {
    what,
    tools: ['sqlcmd'],
    command: ({ tool }) => ({
      file: tool,
      args: [...connection(db), '-h', '-1', '-W', '-Q', `SET NOCOUNT ON; ${query}`],
      env: passwordEnv(db),
      files: [],
    }),
    parse,
  };
}

// A SQL Server backup is a Microsoft Tape Format media set: it starts with a TAPE descriptor block.
const MTF_MAGIC = Buffer.from('TAPE', 'latin1');

// The head mark of a SQL Server backup (the server's RESTORE VERIFYONLY has checked the rest).
export function bakHeadCheck(): CompletenessCheck {
  return edgeCheck({
    scope: 'head',
    head: MTF_MAGIC.length,
    tail: 0,
    judge: (head) => (head.equals(MTF_MAGIC) ? undefined : `the backup does not start with the TAPE block of a SQL Server backup (it starts with ${JSON.stringify(head.toString('latin1'))})`),
  });
}

export const mssql = {
  tools: () => ['sqlcmd'],
  restoreTool: 'sqlcmd',
  // Backups only: the job cannot restore or count these (configuration refuses those modes).
  restorer: backupOnly(
    'bak',
    'RESTORE DATABASE is run by the server on a file on its own disk: copy the object there and run it with sqlcmd (docs/databases.md)',
    'the job has no throw-away SQL Server to restore into (sqlservr needs 2 GiB of memory and is not started by the job)',
  ),
  scratch: 'the job starts no throw-away SQL Server',
  defaultPort: 1433,
  extension: () => '.bak',
  // sqlcmd (ODBC) prints its version with -?; go-sqlcmd also knows --version.
  versionArgs: ['-?'],

  validate(db) {
    const problems: string[] = [];
    if (!db.host) problems.push('DB_HOST is required for mssql');
    if (!db.name) problems.push('DB_NAME is required for mssql: BACKUP DATABASE backs up one database');
    if (db.allDatabases) problems.push('DB_ALL_DATABASES is not supported for mssql: run one job per database');
    if (db.tlsCaFile) problems.push('DB_TLS_CA_FILE is not supported for mssql: sqlcmd trusts the system certificate store');
    return [...unsafeValues(db), ...problems];
  },

  command(db, { secretsDir, tool }) {
    const path = join(secretsDir, 'backup.bak');
    const env = passwordEnv(db);
    const base = connection(db);
    const name = db.name ?? '';
    const backup = `BACKUP DATABASE ${quoteName(name)} TO DISK = ${quoteString(path)} WITH COPY_ONLY, CHECKSUM, FORMAT, INIT`;
    const verify = `RESTORE VERIFYONLY FROM DISK = ${quoteString(path)} WITH CHECKSUM`;
    const spool = {
      path,
      kind: 'file',
      steps: [
        { file: tool, args: [...base, ...db.extraArgs, '-Q', backup], env },
        { file: tool, args: [...base, '-Q', verify], env },
      ],
    } as const;
    return { ...streamSpool(spool), env: {}, files: [], spool };
  },

  // Databases ids 1–4 are master, tempdb, model and msdb; only those online and open to this login.
  discover: (db) =>
    sqlcmdQuery(db, 'sys.databases', "SELECT name FROM sys.databases WHERE database_id > 4 AND state_desc = 'ONLINE' AND HAS_DBACCESS(name) = 1 ORDER BY name", (stdout) =>
      lines(stdout).map((line) => line.trim()),
    ),

  // Pages in use by the database's data and indexes: about what BACKUP writes (it copies used extents).
  size: (db) =>
    sqlcmdQuery(db, 'sys.allocation_units used_pages', `SELECT SUM(CAST(used_pages AS bigint)) * 8192 FROM ${quoteName(db.name ?? '')}.sys.allocation_units`, (stdout) =>
      wholeNumber(lines(stdout).at(-1)),
    ),

  completeness: () => bakHeadCheck(),

  classify(stderr) {
    if (/Login failed|password|permission|not able to access the database|BACKUP DATABASE permission/i.test(stderr)) return 'auth';
    if (/Login timeout expired|TCP Provider|server was not found|network-related|Connection refused|No such host/i.test(stderr)) return 'unreachable';
    return 'failed';
  },
} satisfies DumpEngine;
