// STORAGE_TYPE=local: STORAGE_BUCKET is a directory. The body is written to a hidden temporary file
// beside the destination, flushed to disk, and only then linked to the key (link fails instead of
// overwriting); on any failure the temporary file is removed and nothing appears at the key.
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, mkdir, rm, rmdir } from 'node:fs/promises';
import { basename, dirname, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { pathToFileURL } from 'node:url';
import { StorageError, type StorageFailure } from '../errors.ts';
import { rootCause } from './failure.ts';
import type { StorageDriver } from './types.ts';

// errno codes that no retry will heal.
const DENIED_CODES = new Set(['EACCES', 'EPERM', 'EROFS']);

function kindOf(error: unknown): StorageFailure {
  const code = (error as NodeJS.ErrnoException | undefined)?.code;
  if (code && DENIED_CODES.has(code)) return 'denied';
  if (code === 'EIO' || code === 'EAGAIN' || code === 'EBUSY') return 'unavailable';
  return 'other';
}

// After a failure, removes the (still empty) folders this upload created, deepest first.
async function removeCreatedDirs(deepest: string, created: string | undefined): Promise<void> {
  if (created === undefined) return;
  for (let dir = deepest; dir.startsWith(created); dir = dirname(dir)) {
    await rmdir(dir).catch(() => undefined); // not empty (another run wrote there meanwhile): keep it
    if (dir === created) break;
  }
}

export const local = {
  env: {},
  secrets: [],
  // A folder has no write-once lock the job could set and nobody could lift.
  retention: false,
  open(common) {
    const root = resolve(common.bucket);
    return {
      async upload({ key, body, signal, log }) {
        const destination = resolve(root, key);
        if (!destination.startsWith(root + sep)) throw new StorageError(`key ${key} leaves the storage root`, 'other');
        const temporary = resolve(dirname(destination), `.${basename(destination)}.partial-${randomBytes(6).toString('hex')}`);
        const removeTemporary = () =>
          rm(temporary, { force: true }).catch((error: unknown) => log.warn({ err: error, temporary }, 'could not remove temporary file'));
        let created: string | undefined;
        // This target's own error when it failed first; null when the body did.
        let ownFailure: Error | null | undefined;
        try {
          created = await mkdir(dirname(destination), { recursive: true });
          // flush: fsync before close, so a linked backup is on disk, not only in the page cache.
          const sink = createWriteStream(temporary, { flags: 'wx', mode: 0o640, flush: true });
          // pipeline() passes either stream's error on to the other: the first to fail is the cause.
          // (The body may have failed before this listener existed: then body.errored is set.)
          sink.once('error', (error) => {
            if (ownFailure === undefined) ownFailure = body.errored ? null : error;
          });
          body.once('error', () => {
            if (ownFailure === undefined) ownFailure = null;
          });
          await pipeline(body, sink, { signal });
          await link(temporary, destination);
        } catch (error) {
          await removeTemporary();
          if ((error as NodeJS.ErrnoException).code === 'EEXIST') {
            throw new StorageError(`refusing to overwrite existing ${destination}`, 'other', { cause: error });
          }
          await removeCreatedDirs(dirname(destination), created);
          if (ownFailure && !signal.aborted) throw new StorageError(`writing ${destination} failed: ${ownFailure.message}`, kindOf(ownFailure), { cause: ownFailure });
          throw rootCause(error, body, signal, `writing ${destination} failed`, kindOf(error));
        }
        await removeTemporary();
        return { url: pathToFileURL(destination).href };
      },
    };
  },
} satisfies StorageDriver;

