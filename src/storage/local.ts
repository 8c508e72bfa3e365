// STORAGE_TYPE=local: STORAGE_BUCKET is a directory. The body is written to a hidden temporary file
// beside the destination, flushed to disk, and only then linked to the key (link fails instead of
// overwriting); on any failure the temporary file is removed and nothing appears at the key.
// A run killed outright (SIGKILL) cannot remove it: its name (`.KEY.partial-<owner>-<random>`, hidden,
// never ending in the backup's extension) marks it as no backup, and the next run into the same folder
// removes the ones that are provably stale (leftovers.ts, or untouched for STALE_PARTIAL_AGE_MS).
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, statSync, type ReadStream } from 'node:fs';
import { link, mkdir, open, readdir, rm, rmdir, stat, type FileHandle } from 'node:fs/promises';
import { basename, dirname, relative, resolve, sep } from 'node:path';
import { once } from 'node:events';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { ConfigError, StorageError, type StorageFailure } from '../errors.ts';
import { OWNER_TAG_PATTERN, ownerIsGone, ownerTag } from '../leftovers.ts';
import type { Logger } from '../log.ts';
import { rootCause } from './failure.ts';
import type { StorageDriver } from './types.ts';

// errno codes that no retry will heal.
const DENIED_CODES = new Set(['EACCES', 'EPERM', 'EROFS']);

// Which StorageFailure a file-system error is.
export function classify(error: unknown): StorageFailure {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code && DENIED_CODES.has(code)) return 'denied';
  if (code === 'EIO' || code === 'EAGAIN' || code === 'EBUSY') return 'unavailable';
  return 'other';
}

// A live run writes its partial file at least once per BACKUP_STALL_TIMEOUT (6 h at most) or fails
// and removes it: a partial file untouched for a day belongs to no live run, whoever wrote it.
const STALE_PARTIAL_AGE_MS = 24 * 3_600_000;
const PARTIAL = new RegExp(`^\\..+\\.partial-(${OWNER_TAG_PATTERN})-[0-9a-f]{12}$`);

// Removes the partial files of dead runs from one folder (see the top of this file).
async function removeStalePartials(dir: string, log: Logger): Promise<void> {
  const names = await readdir(dir).catch(() => [] as string[]);
  for (const name of names) {
    const owner = PARTIAL.exec(name)?.[1];
    if (owner === undefined) continue;
    const path = resolve(dir, name);
    const info = await stat(path).catch(() => undefined);
    if (!info?.isFile() || !(ownerIsGone(owner) || Date.now() - info.mtimeMs > STALE_PARTIAL_AGE_MS)) continue;
    await rm(path, { force: true }).then(
      () => log.info({ file: path }, 'removed the partial file of an earlier run that was killed'),
      (error: unknown) => log.warn({ err: error, file: path }, 'could not remove the partial file of an earlier run'),
    );
  }
}

// Errors about the folder itself that no retry heals: a configuration problem with a clear message.
function folderProblem(error: unknown, root: string): ConfigError | undefined {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENAMETOOLONG') return new ConfigError([`STORAGE_BUCKET/BACKUP_PATH: the path under ${root} is too long for this filesystem`]);
  if (code === 'ENOTDIR' || code === 'EEXIST') return new ConfigError([`STORAGE_BUCKET: ${root} or a folder of BACKUP_PATH under it is a file, not a folder`]);
  return undefined;
}

// After a failure, removes the (still empty) folders this upload created, deepest first.
async function removeCreatedDirs(deepest: string, created: string | undefined): Promise<void> {
  if (created === undefined) return;
  for (let dir = deepest; dir.startsWith(created); dir = dirname(dir)) {
    await rmdir(dir).catch(() => undefined); // not empty (another run wrote there meanwhile): keep it
    if (dir === created) break;
  }
}

// Another run into the same folder that fails removes the folders it created once they are empty,
// possibly between this run's mkdir and its open: the folder is then made again, a few times at most.
const OPEN_ATTEMPTS = 3;

// Runs `step` again while it fails with ENOENT (a folder on its path removed under it), a few times at most.
async function retryVanished<T>(step: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt += 1) {
    try {
      return await step();
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOENT' || attempt >= OPEN_ATTEMPTS) throw error;
    }
  }
}

// Makes the folder (and those above it); returns the first one it created, as mkdir does.
function makeFolder(dir: string): Promise<string | undefined> {
  return retryVanished(() => mkdir(dir, { recursive: true }));
}

// Creates the temporary file (never an existing one), making its folder again if it vanished;
// `made` gets the first folder a retry had to create, for the cleanup on failure.
function openTemporary(path: string, made: (dir: string | undefined) => void): Promise<FileHandle> {
  return retryVanished(async () => {
    try {
      return await open(path, 'wx', 0o640);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') made(await makeFolder(dirname(path)));
      throw error;
    }
  });
}

export const local = {
  env: {},
  secrets: [],
  // A folder has no write-once lock the job could set and nobody could lift.
  retention: false,
  classify,
  open(common) {
    const root = resolve(common.bucket);
    let kind: 'folder' | 'file' | 'missing';
    try {
      kind = statSync(root).isDirectory() ? 'folder' : 'file';
    } catch (error) {
      // ENOTDIR: a file stands where a parent folder should be. Anything else: created on the first upload.
      const problem = folderProblem(error, root);
      if (problem && (error as NodeJS.ErrnoException).code !== 'ENOTDIR') throw problem;
      kind = (error as NodeJS.ErrnoException).code === 'ENOTDIR' ? 'file' : 'missing';
    }
    if (kind === 'file') throw new ConfigError([`STORAGE_BUCKET: ${root} (or a folder above it) is a file; for STORAGE_TYPE=local it must be a folder`]);
    const inside = (key: string): string => {
      const path = resolve(root, key);
      if (!path.startsWith(root + sep)) throw new StorageError(`key ${key} leaves the storage root`, 'other');
      return path;
    };
    return {
      async download(key, signal) {
        const path = inside(key);
        const stream: ReadStream = createReadStream(path, { signal });
        try {
          await once(stream, 'open');
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code ?? '';
          const kind = ['ENOENT', 'ENOTDIR', 'EISDIR'].includes(code) ? 'missing' : classify(error);
          throw new StorageError(`reading ${path} failed: ${(error as Error).message}`, kind, { cause: error });
        }
        return stream;
      },

      async list(prefix, signal) {
        // The prefix may end inside a name (`daily/postgresql-shop-`): walk its folder, then filter.
        const start = prefix === '' || prefix.endsWith('/') ? resolve(root, prefix) : dirname(resolve(root, prefix));
        if (start !== root && !start.startsWith(root + sep)) throw new StorageError(`prefix ${prefix} leaves the storage root`, 'other');
        const entries = await readdir(start, { withFileTypes: true, recursive: true }).catch((error: unknown) => {
          if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
          throw new StorageError(`listing ${start} failed: ${(error as Error).message}`, classify(error), { cause: error });
        });
        const found = [];
        for (const entry of entries) {
          signal.throwIfAborted();
          // Hidden names are uploads in progress (see upload below), never complete objects.
          if (!entry.isFile() || entry.name.startsWith('.')) continue;
          const path = resolve(entry.parentPath, entry.name);
          const key = relative(root, path).split(sep).join('/');
          if (!key.startsWith(prefix)) continue;
          found.push({ key, bytes: (await stat(path)).size });
        }
        return found;
      },

      async upload({ key, body, signal, log }) {
        const destination = inside(key);
        const temporary = resolve(dirname(destination), `.${basename(destination)}.partial-${ownerTag()}-${randomBytes(6).toString('hex')}`);
        const removeTemporary = () =>
          rm(temporary, { force: true }).catch((error: unknown) => log.warn({ err: error, temporary }, 'could not remove temporary file'));
        let created: string | undefined;
        let linking = false;
        // This target's own error when it failed first; null when the body did.
        let ownFailure: Error | null | undefined;
        try {
          created = await makeFolder(dirname(destination));
          await removeStalePartials(dirname(destination), log);
          const handle = await openTemporary(temporary, (made) => (created ??= made));
          // flush: fsync before close, so a linked backup is on disk, not only in the page cache.
          const sink = createWriteStream('', { fd: handle, flush: true });
          // pipeline() passes either stream's error on to the other: the first to fail is the cause.
          // (The body may have failed before this listener existed: then body.errored is set.)
          sink.once('error', (error) => {
            if (ownFailure === undefined) ownFailure = body.errored ? null : error;
          });
          body.once('error', () => {
            if (ownFailure === undefined) ownFailure = null;
          });
          await pipeline(body, sink, { signal });
          linking = true;
          await link(temporary, destination);
        } catch (error) {
          await removeTemporary();
          if (!linking) {
            const problem = folderProblem(error, root);
            if (problem) throw problem;
          }
          if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
            throw new StorageError(`refusing to overwrite existing ${destination}`, 'other', { cause: error });
          }
          await removeCreatedDirs(dirname(destination), created);
          if (ownFailure && !signal.aborted) throw new StorageError(`writing ${destination} failed: ${ownFailure.message}`, classify(ownFailure), { cause: ownFailure });
          throw rootCause(error, body, signal, `writing ${destination} failed`, classify(error));
        }
        await removeTemporary();
        return { url: pathToFileURL(destination).href };
      },
    };
  },
} satisfies StorageDriver;

