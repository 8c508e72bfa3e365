// Helpers for the deploy/ tests: reading the YAML files, the variables the job understands, and a
// strict structural check of Kubernetes objects (unknown fields fail, as `kubectl apply` does).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import ts from 'typescript';
import { parse, parseAllDocuments } from 'yaml';
import { secretVariables } from '../../../src/config.ts';
import { STORAGE_DRIVERS } from '../../../src/storage/registry.ts';
import { ROOT } from '../../../deploy/images/render.ts';

export const DEPLOY = join(ROOT, 'deploy');

// Every document of a YAML file, failing on any parse error or warning.
export async function readYaml(path: string): Promise<unknown[]> {
  const text = await readFile(path, 'utf8');
  const docs = parseAllDocuments(text);
  if (!Array.isArray(docs)) throw new Error(`${path}: not a YAML stream`);
  const problems = docs.flatMap((doc) => [...doc.errors, ...doc.warnings].map((e) => e.message));
  if (problems.length > 0) throw new Error(`${path}: ${problems.join('; ')}`);
  return docs.map((doc) => doc.toJS() as unknown);
}

// kubectl reads YAML 1.1 (0440 is octal there, `on` is true); the same text must mean the same thing
// in YAML 1.2, or a value is not what the file seems to say.
export async function sameInYaml11(path: string): Promise<boolean> {
  const text = await readFile(path, 'utf8');
  return JSON.stringify(parse(text, { version: '1.1' })) === JSON.stringify(parse(text, { version: '1.2' }));
}

// Every variable the job reads: the base contract in src/config.ts (its envalid specs), each storage
// target's own, and the X_FILE form of every secret.
export async function jobVariables(): Promise<Set<string>> {
  const source = await readFile(join(ROOT, 'src/config.ts'), 'utf8');
  const names = new Set([...source.matchAll(/^\s+([A-Z][A-Z0-9_]+): (?:str|num|bool|url|httpUrl|duration|stallTimeout|size|count|list|stringMap|headerMap|nameList)\(/gm)].map((m) => m[1] ?? ''));
  for (const driver of Object.values(STORAGE_DRIVERS)) for (const name of Object.keys(driver.env)) names.add(name);
  for (const secret of secretVariables()) names.add(`${secret}_FILE`);
  return names;
}

// The kubernetes-models type of each kind we deploy, for the strict check below.
const MODEL_TYPES: Record<string, { module: string; type: string }> = {
  'batch/v1/CronJob': { module: 'kubernetes-models/batch/v1/CronJob', type: 'ICronJob' },
  'v1/ServiceAccount': { module: 'kubernetes-models/v1/ServiceAccount', type: 'IServiceAccount' },
  'v1/Namespace': { module: 'kubernetes-models/v1/Namespace', type: 'INamespace' },
  'v1/Secret': { module: 'kubernetes-models/v1/Secret', type: 'ISecret' },
  'v1/ConfigMap': { module: 'kubernetes-models/v1/ConfigMap', type: 'IConfigMap' },
};

// Type-checks each object as a literal of its Kubernetes type: a misspelt or misplaced field is an
// excess property, which the models' validate() lets through (their schemas allow extra fields).
export function unknownFieldErrors(objects: readonly { apiVersion: string; kind: string }[]): string[] {
  const file = join(ROOT, 'test/unit/deploy/__manifests__.ts');
  const lines = objects.map((object, index) => {
    const model = MODEL_TYPES[`${object.apiVersion}/${object.kind}`];
    if (!model) throw new Error(`no model type for ${object.apiVersion} ${object.kind}`);
    return `import type { ${model.type} as T${index} } from '${model.module}';\nexport const m${index}: T${index} = ${JSON.stringify(object, null, 1)};`;
  });
  const source = lines.join('\n');
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    skipLibCheck: true,
    types: [],
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.NodeNext,
    moduleResolution: ts.ModuleResolutionKind.NodeNext,
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  const fileExists = host.fileExists.bind(host);
  const readFileText = host.readFile.bind(host);
  host.getSourceFile = (name, language, ...rest) => (name === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest));
  host.fileExists = (name) => name === file || fileExists(name);
  host.readFile = (name) => (name === file ? source : readFileText(name));
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
    const context = where ? source.split('\n').slice(Math.max(0, where.line - 2), where.line + 1).join(' ').replace(/\s+/g, ' ') : '';
    return `${ts.flattenDiagnosticMessageText(d.messageText, ' ')} near: ${context}`;
  });
}
