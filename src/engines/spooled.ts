// Shared by the engines whose tool writes to disk (see Spool in types.ts): how the spool is streamed.
import type { Spool } from './types.ts';

// The command that streams a spool: the file as it is, a directory as a tar archive of its contents.
export function streamSpool(spool: Spool): { file: string; args: string[] } {
  return spool.kind === 'file' ? { file: 'cat', args: [spool.path] } : { file: 'tar', args: ['-cf', '-', '-C', spool.path, '.'] };
}
