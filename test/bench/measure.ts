// Runs one command under measurement: wall time, CPU seconds of its whole process tree (GNU time's
// wait4 rusage includes every descendant that was waited for), the peak RSS of each process in the
// tree (VmHWM), the sampled sum of the tree's RSS, and the machine's CPU over the same interval
// (which includes the database server and the S3 mock, not in the tree).
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

// How often the process tree is walked; /proc reads cost ~1 % of a core at this rate.
const SAMPLE_INTERVAL_MS = 200;
// Clock ticks per second of /proc/stat (USER_HZ, 100 on every Linux we run on).
const USER_HZ = 100;
const GNU_TIME = '/usr/bin/time';

export type Command = {
  argv: readonly string[];
  env: Readonly<Record<string, string>>;
  // Where the command's stdout goes: a file path, or /dev/null when undefined.
  stdoutFile?: string;
  // A run that takes longer is killed (its whole process group) and reported as failed.
  timeoutMs: number;
  // Root pids of the services the command talks to, whose CPU is accounted separately.
  services?: readonly number[];
};

// The peak of one process of the tree.
// `root`: the command itself (the direct child of GNU time), e.g. the job's Node process.
// `cpuSeconds`: as last sampled (up to one interval short of the final figure).
export type ProcessPeak = { pid: number; name: string; hwmBytes: number; root: boolean; cpuSeconds: number };

export type Measurement = {
  ok: boolean;
  exitCode: number | null;
  wallMs: number;
  // user + sys of the whole tree, seconds.
  cpuSeconds: number;
  // The largest single process's peak RSS (GNU time's %M: the max over the waited-for tree).
  maxProcessRssBytes: number;
  // The largest sampled sum of RSS over the tree: what a container's memory limit sees.
  treeRssBytes: number;
  peaks: ProcessPeak[];
  // CPU seconds the whole machine spent (all processes, all cores) during the run.
  machineCpuSeconds: number;
  // CPU seconds of the services the command talks to (database server, S3 mock).
  serviceCpuSeconds: number;
  // What is left: other workloads on a shared machine. A large figure means a disturbed run.
  foreignCpuSeconds: number;
  stderrTail: string;
};

// cpuTicks: utime + stime + cutime + cstime (the process and its reaped children); ownTicks: without them.
type ProcStat = { pid: number; ppid: number; name: string; rssPages: number; cpuTicks: number; ownTicks: number };

async function readStat(pid: number): Promise<ProcStat | undefined> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  if (text === undefined) return undefined; // exited between readdir and read
  const close = text.lastIndexOf(')');
  const fields = text.slice(close + 2).split(' ');
  // Fields after the name, 0-based: 1 ppid, 11 utime, 12 stime, 13 cutime, 14 cstime, 21 rss.
  const ownTicks = Number(fields[11]) + Number(fields[12]);
  const cpuTicks = ownTicks + Number(fields[13]) + Number(fields[14]);
  return { pid, ppid: Number(fields[1]), name: text.slice(text.indexOf('(') + 1, close), rssPages: Number(fields[21]), cpuTicks, ownTicks };
}

async function readHwm(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)?.[1] ?? 0) * 1024;
}

async function machineTicks(): Promise<number> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n')[0] ?? '';
  // user nice system idle iowait irq softirq steal: everything but idle and iowait is work.
  const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
  return (user ?? 0) + (nice ?? 0) + (system ?? 0) + (irq ?? 0) + (softirq ?? 0) + (steal ?? 0);
}

async function allStats(): Promise<ProcStat[]> {
  const pids = (await readdir('/proc')).filter((name) => /^\d+$/.test(name)).map(Number);
  return (await Promise.all(pids.map(readStat))).filter((s) => s !== undefined);
}

function descendants(stats: readonly ProcStat[], roots: readonly number[]): ProcStat[] {
  const children = new Map<number, ProcStat[]>();
  for (const stat of stats) children.set(stat.ppid, [...(children.get(stat.ppid) ?? []), stat]);
  const out: ProcStat[] = [];
  const walk = (pid: number) => {
    for (const child of children.get(pid) ?? []) {
      out.push(child);
      walk(child.pid);
    }
  };
  for (const root of roots) {
    const self = stats.find((s) => s.pid === root);
    if (self) out.push(self);
    walk(root);
  }
  return out;
}

// CPU seconds spent so far by the trees under `roots`: every live process's own time plus the time
// of the children it has already reaped (cutime/cstime), so exited backends are counted too.
async function servicesCpuSeconds(roots: readonly number[]): Promise<number> {
  if (roots.length === 0) return 0;
  return descendants(await allStats(), roots).reduce((sum, s) => sum + s.cpuTicks, 0) / USER_HZ;
}

// Waits until other workloads leave the machine alone (used CPU, services and this process
// excepted, below `maxCores` over one second), at most `maxWaitMs`; returns the last reading.
export async function waitForQuiet(services: readonly number[], maxCores: number, maxWaitMs: number): Promise<number> {
  const deadline = Date.now() + maxWaitMs;
  for (;;) {
    const [ticks, service, self] = [await machineTicks(), await servicesCpuSeconds(services), process.cpuUsage()];
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const selfUsage = process.cpuUsage(self);
    const foreign = ((await machineTicks()) - ticks) / USER_HZ - ((await servicesCpuSeconds(services)) - service) - (selfUsage.user + selfUsage.system) / 1e6;
    if (foreign <= maxCores || Date.now() > deadline) return foreign;
  }
}

// Samples the tree under `root` until stopped; per-process VmHWM is exact, the sum is sampled.
function sampleTree(root: number): { stop(): Promise<{ peaks: ProcessPeak[]; treeRssBytes: number }> } {
  const peaks = new Map<number, ProcessPeak>();
  let treeRssBytes = 0;
  let running = true;
  const tick = async () => {
    const tree = descendants(await allStats(), [root]).filter((s) => s.pid !== root);
    treeRssBytes = Math.max(treeRssBytes, tree.reduce((sum, s) => sum + s.rssPages * 4096, 0));
    for (const stat of tree) {
      const hwm = await readHwm(stat.pid);
      const known = peaks.get(stat.pid);
      peaks.set(stat.pid, { pid: stat.pid, name: stat.name, hwmBytes: Math.max(hwm, known?.hwmBytes ?? 0), root: stat.ppid === root, cpuSeconds: stat.ownTicks / USER_HZ });
    }
  };
  const loop = (async () => {
    while (running) {
      await tick();
      await new Promise((resolve) => setTimeout(resolve, SAMPLE_INTERVAL_MS));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { peaks: [...peaks.values()], treeRssBytes };
    },
  };
}

// Runs `command` to completion (or its timeout) and measures it.
export async function measure(command: Command): Promise<Measurement> {
  const dir = await mkdtemp(join(tmpdir(), 'planb-bench-time-'));
  const timeFile = join(dir, 'time');
  const stdout = openSync(command.stdoutFile ?? '/dev/null', 'w');
  const services = command.services ?? [];
  const serviceBefore = await servicesCpuSeconds(services);
  const selfBefore = process.cpuUsage();
  const ticksBefore = await machineTicks();
  const started = performance.now();
  let child;
  try {
    child = spawn(GNU_TIME, ['-f', '%U %S %M', '-o', timeFile, '--', ...command.argv], {
      env: { ...command.env },
      stdio: ['ignore', stdout, 'pipe'],
      detached: true,
    });
  } finally {
    closeSync(stdout);
  }
  let stderr = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (text: string) => (stderr = (stderr + text).slice(-4000)));
  const sampler = sampleTree(child.pid ?? -1);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    process.kill(-(child.pid ?? 0), 'SIGKILL');
  }, command.timeoutMs);
  const exitCode = await new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const wallMs = performance.now() - started;
  clearTimeout(timer);
  const ticksAfter = await machineTicks();
  const serviceCpuSeconds = (await servicesCpuSeconds(services)) - serviceBefore;
  const self = process.cpuUsage(selfBefore);
  const { peaks, treeRssBytes } = await sampler.stop();
  const timeOutput = (await readFile(timeFile, 'utf8').catch(() => '')).trim().split('\n').at(-1) ?? '';
  await rm(dir, { recursive: true, force: true });
  const [user, sys, maxKb] = timeOutput.split(' ').map(Number);
  const cpuSeconds = (user ?? Number.NaN) + (sys ?? Number.NaN);
  const machineCpuSeconds = (ticksAfter - ticksBefore) / USER_HZ;
  return {
    ok: exitCode === 0 && !timedOut,
    exitCode,
    wallMs,
    cpuSeconds,
    maxProcessRssBytes: (maxKb ?? Number.NaN) * 1024,
    treeRssBytes,
    peaks: peaks.filter((p) => p.name !== 'time'),
    machineCpuSeconds,
    serviceCpuSeconds,
    foreignCpuSeconds: machineCpuSeconds - cpuSeconds - serviceCpuSeconds - (self.user + self.system) / 1e6,
    stderrTail: timedOut ? `timed out after ${command.timeoutMs} ms\n${stderr}` : stderr,
  };
}
