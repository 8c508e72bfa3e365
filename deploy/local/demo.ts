// `npm start`: the job run locally with an embedded default — a generated SQLite database backed
// up to ./backups — so a newcomer sees a real run (logs, key layout, exit code) in one command.
// Installs the sqlite3 and zstd CLIs from Debian when missing and running as root.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';

const ROOT = resolve(import.meta.dirname, '../..');
const DATABASE = join(ROOT, 'demo/planb-demo.sqlite');
const BUCKET = join(ROOT, 'backups');

// The seed data of the product's image tests: three movies, three actors, plus what breaks naive dumps.
const SEED = `
CREATE TABLE movies (id INTEGER PRIMARY KEY, title TEXT NOT NULL, year INTEGER, rating REAL, poster BLOB);
CREATE TABLE actors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, birth_year INTEGER, nationality TEXT);
INSERT INTO movies (title, year, rating, poster) VALUES
  ('The Shawshank Redemption', 1994, 9.3, x'89504e470d0a1a0a'),
  ('Le Fabuleux Destin d''Amélie Poulain', 2001, 8.3, NULL),
  ('千と千尋の神隠し', 2001, 8.6, x'00ff00ff');
INSERT INTO actors (name, birth_year, nationality) VALUES
  ('Morgan Freeman', 1937, 'American'), ('Audrey Tautou', 1976, 'French'), ('Rumi Hiiragi', 1987, NULL);
`;

function have(command: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore' }).status === 0;
}

function ensureDebianPackages(packages: Record<string, string>): void {
  const missing = Object.entries(packages).filter(([command]) => !have(command)).map(([, pkg]) => pkg);
  if (missing.length === 0) return;
  if (process.getuid?.() !== 0) {
    console.error(`npm start needs ${missing.join(', ')}: install with: sudo apt-get install -y ${missing.join(' ')}`);
    process.exit(1);
  }
  console.error(`installing ${missing.join(', ')} from Debian…`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit' });
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

// zstd is optional for the job (it falls back to Node's zlib) but it is what the images ship.
ensureDebianPackages({ sqlite3: 'sqlite3', zstd: 'zstd' });
if (!existsSync(DATABASE)) {
  mkdirSync(join(ROOT, 'demo'), { recursive: true });
  execFileSync('sqlite3', [DATABASE], { input: SEED });
  console.error(`created the demo database ${DATABASE}`);
}

const job = spawnSync(process.execPath, [join(ROOT, 'dist/main.js')], {
  stdio: 'inherit',
  env: {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    DB_TYPE: 'sqlite',
    DB_NAME: DATABASE,
    STORAGE_TYPE: 'local',
    STORAGE_BUCKET: BUCKET,
    BACKUP_PATH: 'demo/',
    LOG_LEVEL: process.env.LOG_LEVEL ?? 'info',
  },
});
console.error(
  job.status === 0
    ? `\nexit code 0: the backup is in ${BUCKET}/demo/. Restore it with:\n  zstd -dc ${BUCKET}/demo/<key>.sql.zst | sqlite3 restored.sqlite`
    : `\nexit code ${job.status ?? job.signal}: see the README's exit-code table`,
);
process.exit(job.status ?? 1);
