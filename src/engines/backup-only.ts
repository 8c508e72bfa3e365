// The restorer of an engine the job backs up but cannot restore or count (arangodb, cassandra, mssql);
// docs/databases.md gives each one's restore by hand, and why the job does not run it.
import { DumpError } from '../errors.ts';
import type { DumpFormat, Restorer } from './types.ts';

// A restorer that configuration never lets run (restoreUnsupported, countUnsupported say why).
export function backupOnly(format: DumpFormat, restore: string, counts: string): Restorer {
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
