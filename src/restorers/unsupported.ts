// DB_TYPE=arangodb, cassandra and mssql: backups only. The job cannot restore or count these yet;
// docs/databases.md gives each one's restore by hand, and why the job does not run it.
import { DumpError } from '../errors.ts';
import type { DumpFormat, Restorer } from './types.ts';

// A restorer that configuration never lets run (restoreUnsupported, countUnsupported say why).
function backupOnly(format: DumpFormat, restore: string, counts: string): Restorer {
  const refuse = (what: string): never => {
    throw new DumpError(`${what} is not available for this database type`, { kind: 'missing-tool', stage: 'restore' });
  };
  return {
    formats: [format],
    tools: () => [],
    restoreUnsupported: restore,
    countUnsupported: counts,
    command: () => refuse('a restore'),
    count: () => Promise.reject(new DumpError('counting is not available for this database type', { kind: 'missing-tool', stage: 'restore' })),
  };
}

export const arangodb = backupOnly(
  'tar',
  'arangorestore reads a directory: unpack the object with tar and run arangorestore --input-directory (docs/databases.md)',
  'the job has no throw-away arangod to restore into (a server of 1 GiB or more, not started by the job)',
);

export const cassandra = backupOnly(
  'tar',
  'a keyspace is restored table by table with cqlsh (the schema, then COPY … FROM per CSV file, docs/databases.md)',
  'the job has no throw-away Cassandra node to restore into (a JVM of 1 GiB or more, not started by the job)',
);

export const mssql = backupOnly(
  'bak',
  'RESTORE DATABASE is run by the server on a file on its own disk: copy the object there and run it with sqlcmd (docs/databases.md)',
  'the job has no throw-away SQL Server to restore into (sqlservr needs 2 GiB of memory and is not started by the job)',
);
