// What a killed run (SIGKILL, OOM, power loss) leaves behind, and how the next run recognises it.
// Every temporary thing a run creates on a filesystem (the credentials directory in TMPDIR, the local
// target's partial file) carries an owner tag: boot id, host and process id. A later run on the same
// host removes a leftover only when that proves its owner dead: the host has rebooted since, or the
// process no longer exists. Nothing else is ever touched: only names that match our own pattern.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';

// `<boot>-<host>-<pid>`: 8 hex digits of the kernel's boot id, 8 of a hash of the host name, the pid.
export type OwnerTag = string;
export const OWNER_TAG_PATTERN = '[0-9a-f]{8}-[0-9a-f]{8}-[0-9]+';

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').replace(/[^0-9a-f]/g, '').slice(0, 8).padEnd(8, '0');
  } catch {
    return '00000000'; // no /proc: only the process-id test applies
  }
}

function hostHash(): string {
  return createHash('sha256').update(hostname()).digest('hex').slice(0, 8);
}

// This process's tag.
export function ownerTag(): OwnerTag {
  return `${bootId()}-${hostHash()}-${process.pid}`;
}

// True when the run that owns `tag` is provably gone: same host, and either another boot or a
// process id that no longer exists. A tag from another host (a shared folder) is never judged here.
export function ownerIsGone(tag: OwnerTag): boolean {
  const [boot, host, pidText] = tag.split('-');
  const pid = Number(pidText);
  if (host !== hostHash() || !Number.isInteger(pid) || pid <= 0) return false;
  if (boot !== bootId() && boot !== '00000000') return true;
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return false; // alive (maybe another program reusing the id): keep it
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
