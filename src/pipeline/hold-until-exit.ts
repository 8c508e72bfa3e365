// The stage that makes "a backup exists only if the dump tool exited 0" true: it passes chunks
// through but withholds end-of-stream until `exited` resolves, and errors the stream (so storage
// aborts) as soon as `exited` rejects.
import { Transform } from 'node:stream';

// Creates the stage; `exited` settles when the dump tool (and the compressor) have exited.
export function holdUntilExit(exited: Promise<void>): Transform {
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      callback(null, chunk);
    },
    flush(callback) {
      exited.then(() => callback(), callback);
    },
  });
  exited.catch((error: unknown) => {
    if (!stream.destroyed) stream.destroy(error instanceof Error ? error : new Error(String(error)));
  });
  return stream;
}
