// A pass-through stage that counts the bytes flowing through it and, optionally, hashes them.
import { createHash } from 'node:crypto';
import { Transform } from 'node:stream';

export type Meter = {
  stream: Transform;
  bytes(): number;
  // Hex SHA-256 of everything that passed; '' before the stream has ended or without a hash.
  sha256(): string;
};

// Creates a meter; `hash: false` for the raw side, where only the byte count matters.
export function createMeter(options: { hash: boolean }): Meter {
  const hash = options.hash ? createHash('sha256') : undefined;
  let bytes = 0;
  let digest = '';
  const stream = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      bytes += chunk.length;
      hash?.update(chunk);
      callback(null, chunk);
    },
    // Before 'end' reaches the next stage, so a target may read sha256() once its body has ended.
    flush(callback) {
      digest = hash?.digest('hex') ?? '';
      callback();
    },
  });
  return {
    stream,
    bytes: () => bytes,
    sha256: () => digest,
  };
}
