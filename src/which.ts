// Finds an executable on a PATH string, as the shell would, without running anything.
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

// The absolute path of the first `names` entry found on `path`, or undefined.
export function which(names: readonly string[], path: string): { name: string; file: string } | undefined {
  for (const name of names) {
    for (const dir of path.split(delimiter).filter(Boolean)) {
      const file = join(dir, name);
      try {
        accessSync(file, constants.X_OK);
        return { name, file };
      } catch {
        // not in this directory: keep looking
      }
    }
  }
  return undefined;
}
