// DB_TYPE=mysql: mysqldump with a consistent InnoDB snapshot; mariadb.ts reuses this with its own tools.
import { join } from 'node:path';
import type { DbConfig, DumpEngine } from './types.ts';

// Option files take double-quoted values with backslash escapes.
export function optionFile(db: DbConfig): string {
  const password = (db.password ?? '').replace(/[\\"]/g, (c) => `\\${c}`);
  return `[client]\npassword="${password}"\n`;
}

// MariaDB's client tools spell TLS options differently from Oracle MySQL's.
export function tlsArgs(db: DbConfig, mariadbClient: boolean): string[] {
  const ca = db.tlsCaFile ? [`--ssl-ca=${db.tlsCaFile}`] : [];
  if (!db.tls) return ca;
  if (mariadbClient) {
    const modes = {
      disable: ['--skip-ssl'],
      prefer: [],
      require: ['--ssl', '--skip-ssl-verify-server-cert'],
      'verify-ca': ['--ssl', '--ssl-verify-server-cert'],
      'verify-full': ['--ssl', '--ssl-verify-server-cert'],
    } as const;
    return [...modes[db.tls], ...ca];
  }
  const modes = { disable: 'DISABLED', prefer: 'PREFERRED', require: 'REQUIRED', 'verify-ca': 'VERIFY_CA', 'verify-full': 'VERIFY_IDENTITY' } as const;
  return [`--ssl-mode=${modes[db.tls]}`, ...ca];
}

// Builds the engine for one flavour; `tools` is what that flavour's image ships, best first.
export function mysqlFamily(tools: readonly string[], mariadbClient: boolean): DumpEngine {
  return {
    tools: () => tools,
    restoreTool: mariadbClient ? 'mariadb' : 'mysql',
    defaultPort: 3306,
    extension: () => '.sql',

    validate(db) {
      const problems: string[] = [];
      if (!db.allDatabases && !db.name) problems.push('DB_NAME is required for mysql/mariadb (or set DB_ALL_DATABASES=true)');
      if (db.allDatabases && db.name) problems.push('DB_NAME and DB_ALL_DATABASES=true exclude each other');
      return problems;
    },

    command(db, { secretsDir, tool }) {
      const defaults = join(secretsDir, 'my.cnf');
      const args = [
        // Must be the first option, or the tool ignores it.
        `--defaults-extra-file=${defaults}`,
        ...(db.host ? [`--host=${db.host}`, '--protocol=TCP'] : []),
        ...(db.port && db.host ? [`--port=${db.port}`] : []),
        ...(db.username ? [`--user=${db.username}`] : []),
        ...tlsArgs(db, mariadbClient || tool.startsWith('mariadb')),
        '--single-transaction',
        '--quick',
        '--routines',
        '--triggers',
        '--events',
        '--hex-blob',
        '--default-character-set=utf8mb4',
        ...db.extraArgs,
        ...(db.allDatabases ? ['--all-databases'] : ['--', db.name ?? '']),
      ];
      return { file: tool, args, env: {}, files: [{ path: defaults, content: optionFile(db) }] };
    },

    classify(stderr) {
      if (/Access denied|\b(1044|1045|1227)\b|authentication plugin/i.test(stderr)) return 'auth';
      if (/Can't connect|Unknown (MySQL|MariaDB) server host|Lost connection|\b(2002|2003|2005|2013)\b|Connection refused/i.test(stderr)) return 'unreachable';
      return 'failed';
    },
  };
}

export const mysql = mysqlFamily(['mysqldump'], false);
