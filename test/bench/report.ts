// Turns the runs into the tables docs/benchmarks.md shows: medians per scenario, ratios against the
// group's limit, and the verdict on each of the project's bars (listed in docs/benchmarks.md).
import type { Measurement } from './measure.ts';
import type { Group, Scenario } from './scenarios.ts';

const MB = 1e6;
const MIB = 1024 * 1024;

// One measured run of one scenario.
export type Run = { scenario: Scenario; round: number; measurement: Measurement; storedBytes?: number; rawBytes?: number };

// The medians of one scenario over its rounds.
export type Summary = {
  id: string;
  label: string;
  group: Group;
  isLimit: boolean;
  runs: number;
  failed: number;
  wallS: number;
  wallMinS: number;
  wallMaxS: number;
  cpuS: number;
  machineCpuS: number;
  serviceCpuS: number;
  foreignCpuS: number;
  // Peak RSS of the command's own process (the job's Node process; bash for a pipeline).
  rootRssBytes: number;
  maxProcessRssBytes: number;
  treeRssBytes: number;
  storedBytes: number | undefined;
  rawBytes: number | undefined;
};

function median(values: readonly number[]): number {
  const sorted = values.filter((v) => Number.isFinite(v)).sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const middle = sorted.length >> 1;
  return sorted.length % 2 === 1 ? (sorted[middle] ?? Number.NaN) : ((sorted[middle - 1] ?? 0) + (sorted[middle] ?? 0)) / 2;
}

// Medians per scenario, in first-seen order; failed runs are counted, not averaged in.
export function summarize(runs: readonly Run[]): Summary[] {
  const byId = new Map<string, Run[]>();
  for (const run of runs) byId.set(`${run.scenario.group}/${run.scenario.id}`, [...(byId.get(`${run.scenario.group}/${run.scenario.id}`) ?? []), run]);
  return [...byId.values()].map((all) => {
    const ok = all.filter((r) => r.measurement.ok);
    const first = all[0]!.scenario;
    const m = (pick: (r: Run) => number) => median(ok.map(pick));
    const stored = ok.map((r) => r.storedBytes).filter((b) => b !== undefined);
    const raw = ok.map((r) => r.rawBytes).filter((b) => b !== undefined);
    return {
      id: first.id,
      label: first.label,
      group: first.group,
      isLimit: first.isLimit ?? false,
      runs: all.length,
      failed: all.length - ok.length,
      wallS: m((r) => r.measurement.wallMs / 1000),
      wallMinS: Math.min(...ok.map((r) => r.measurement.wallMs / 1000)),
      wallMaxS: Math.max(...ok.map((r) => r.measurement.wallMs / 1000)),
      cpuS: m((r) => r.measurement.cpuSeconds),
      machineCpuS: m((r) => r.measurement.machineCpuSeconds),
      serviceCpuS: m((r) => r.measurement.serviceCpuSeconds),
      foreignCpuS: m((r) => r.measurement.foreignCpuSeconds),
      rootRssBytes: m((r) => r.measurement.peaks.find((p) => p.root)?.hwmBytes ?? Number.NaN),
      maxProcessRssBytes: m((r) => r.measurement.maxProcessRssBytes),
      treeRssBytes: m((r) => r.measurement.treeRssBytes),
      storedBytes: stored.length > 0 ? median(stored) : undefined,
      rawBytes: raw.length > 0 ? median(raw) : undefined,
    };
  });
}

function fixed(value: number | undefined, digits: number): string {
  return value === undefined || !Number.isFinite(value) ? '–' : value.toFixed(digits);
}

// A Markdown table per group: wall time, ratios, CPU, memory, bytes.
export function table(summaries: readonly Summary[], group: Group): string {
  const rows = summaries.filter((s) => s.group === group);
  const limit = rows.find((s) => s.isLimit);
  // The dump's size: the job reports the raw bytes it read from the tool.
  const raw = rows.map((s) => s.rawBytes).find((b) => b !== undefined);
  const header = [
    'scenario', 'wall s (min–max)', '× limit', 'raw MB/s', 'CPU s: tree', 'services', 'others',
    'peak RSS MiB: command', 'largest process', 'tree', 'stored MB', 'raw/stored', 'runs',
  ];
  const lines = [`| ${header.join(' | ')} |`, `|${header.map(() => '---').join('|')}|`];
  for (const s of rows) {
    lines.push(
      `| ${[
        s.label.replace(/\|/g, '\\|'),
        `${fixed(s.wallS, 1)} (${fixed(s.wallMinS, 1)}–${fixed(s.wallMaxS, 1)})`,
        limit ? fixed(s.wallS / limit.wallS, 2) : '–',
        raw ? fixed(raw / MB / s.wallS, 0) : '–',
        fixed(s.cpuS, 1),
        fixed(s.serviceCpuS, 1),
        fixed(s.foreignCpuS, 1),
        fixed(s.rootRssBytes / MIB, 0),
        fixed(s.maxProcessRssBytes / MIB, 0),
        fixed(s.treeRssBytes / MIB, 0),
        s.storedBytes === undefined ? '–' : fixed(s.storedBytes / MB, 0),
        raw && s.storedBytes ? fixed(raw / s.storedBytes, 2) : '–',
        s.failed > 0 ? `${s.runs - s.failed}/${s.runs} ok` : String(s.runs),
      ].join(' | ')} |`,
    );
  }
  return lines.join('\n');
}

// One of the project's bars and whether the figures meet it.
export type Verdict = { bar: string; figure: string; met: boolean | undefined };

// The bars that concern one group's scenarios; undefined `met` when a scenario is missing.
export function verdicts(summaries: readonly Summary[], group: Group): Verdict[] {
  const get = (id: string) => summaries.find((s) => s.group === group && s.id === id);
  const limit = get('limit');
  const local = get('job-local');
  const s3 = get('job-s3');
  const gzip = get('gzip-aws');
  const zstd = get('zstd-aws');
  const out: Verdict[] = [];
  const ratio = (a?: Summary, b?: Summary) => (a && b ? a.wallS / b.wallS : Number.NaN);
  const local2limit = ratio(local, limit);
  out.push({ bar: 'job → local ≤ 1.05 × limit', figure: `${fixed(local2limit, 3)} ×`, met: Number.isFinite(local2limit) ? local2limit <= 1.05 : undefined });
  if (group === 'postgresql') {
    const speedup = ratio(gzip, s3);
    out.push({ bar: 'job → S3 ≥ 3 × faster than gzip | aws s3 cp', figure: `${fixed(speedup, 2)} ×`, met: Number.isFinite(speedup) ? speedup >= 3 : undefined });
    const vsZstd = ratio(s3, zstd);
    out.push({ bar: 'job → S3 not slower than zstd -3 -T0 | aws s3 cp', figure: `${fixed(vsZstd, 3)} × its time`, met: Number.isFinite(vsZstd) ? vsZstd <= 1 : undefined });
  }
  for (const job of [local, s3]) {
    if (!job) continue;
    out.push({ bar: `${job.label}: job process peak RSS ≤ 200 MiB`, figure: `${fixed(job.rootRssBytes / MIB, 0)} MiB`, met: job.rootRssBytes <= 200 * MIB });
  }
  return out;
}

// The verdicts as a Markdown table.
export function verdictTable(list: readonly Verdict[]): string {
  const mark = (met: boolean | undefined) => (met === undefined ? 'not measured' : met ? 'met' : 'NOT met');
  return ['| bar | figure | |', '|---|---|---|', ...list.map((v) => `| ${v.bar} | ${v.figure} | ${mark(v.met)} |`)].join('\n');
}
