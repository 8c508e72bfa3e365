// Shared by the engines whose tool writes to disk (see Spool in types.ts): how the spool is streamed.
import { edges } from './marks.ts';
import type { CompletenessCheck, Spool } from './types.ts';

// The command that streams a spool: the file as it is, a directory as a tar archive of its contents.
export function streamSpool(spool: Spool): { file: string; args: string[] } {
  return spool.kind === 'file' ? { file: 'cat', args: [spool.path] } : { file: 'tar', args: ['-cf', '-', '-C', spool.path, '.'] };
}

// tar ends an archive with two 512-byte blocks of zeros (padded with more zeros to a whole record).
const TAR_BLOCK = 512;
const TAR_END = 2 * TAR_BLOCK;

// The completeness mark of a tar stream: whole blocks, ending with the end-of-archive blocks.
export function tarEndCheck(): CompletenessCheck {
  const seen = edges(0, TAR_END);
  return {
    scope: 'stream',
    write: (chunk) => seen.write(chunk),
    verdict() {
      const total = seen.total();
      if (total < TAR_END || total % TAR_BLOCK !== 0) return `the tar archive is ${total} bytes, not whole 512-byte blocks ending with its end-of-archive blocks: truncated`;
      if (seen.tail().some((byte) => byte !== 0)) return 'the tar archive does not end with its end-of-archive blocks: truncated';
      return undefined;
    },
  };
}
