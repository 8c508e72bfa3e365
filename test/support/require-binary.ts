import { accessSync, constants, readdirSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { TestContext } from 'node:test';

// Where Debian keeps what is not on a normal user's PATH: daemons in sbin, PostgreSQL's server tools per major.
const SYSTEM_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin'] as const;
const POSTGRES_LIB = '/usr/lib/postgresql';

// Debian's versioned PostgreSQL bin directories, newest major first.
export function postgresBinDirs(): string[] {
  let majors: string[];
  try {
    majors = readdirSync(POSTGRES_LIB);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
  return majors
    .filter((name) => /^\d+(\.\d+)?$/.test(name))
    .sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a))
    .map((major) => join(POSTGRES_LIB, major, 'bin'));
}

function isExecutableFile(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return statSync(path).isFile();
  } catch {
    return false; // absent or not executable: both mean "not here", keep looking
  }
}

// The absolute path of an executable: PATH first, then extraDirs, then sbin and PostgreSQL's bin dirs.
export function findBinary(name: string, extraDirs: readonly string[] = []): string | undefined {
  const pathDirs = (process.env.PATH ?? '').split(delimiter).filter((dir) => dir.startsWith('/'));
  for (const dir of [...pathDirs, ...extraDirs, ...SYSTEM_DIRS, ...postgresBinDirs()]) {
    const candidate = join(dir, name);
    if (isExecutableFile(candidate)) return candidate;
  }
  return undefined;
}

// True when every binary is present; otherwise skips the test loudly, or throws when CI is set
// because a skipped integration test in CI would hide a broken machine.
export function requireBinaries(t: TestContext, names: readonly string[]): boolean {
  const missing = names.filter((name) => findBinary(name) === undefined);
  if (missing.length === 0) return true;
  const hint = 'install them with: sudo bash test/support/ensure-system-packages.sh';
  if (process.env.CI) throw new Error(`missing binaries: ${missing.join(', ')} (CI is set, so this is a failure, not a skip); ${hint}`);
  t.skip(`missing: ${missing.join(', ')}; ${hint}`);
  return false;
}
