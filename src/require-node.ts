// Runs first in the bundle (main.ts imports it before anything else): on a Node.js older than the
// one Plan B is built for, say so in one JSON log line and exit with the configuration code, instead
// of failing later with a SyntaxError or a missing function. Plain, old-fashioned code on purpose.
// esbuild.config.mjs loads Node's own modules lazily, so nothing they lack can break the bundle
// before this check has run.
import { EXIT_CODES } from './exit-codes.ts';

// Set by esbuild.config.mjs from package.json's engines.node; absent when the sources run directly.
declare const PLANB_MIN_NODE_MAJOR: number | undefined;
const minimum = typeof PLANB_MIN_NODE_MAJOR === 'number' ? PLANB_MIN_NODE_MAJOR : 0;

const major = Number(process.versions.node.split('.')[0]);
if (!(major >= minimum)) {
  const line = {
    severity: 'CRITICAL',
    level: 'fatal',
    time: new Date().toISOString(),
    exitCode: EXIT_CODES.CONFIG.code,
    message: 'Plan B needs Node.js ' + minimum + ' or later; this is Node.js ' + process.versions.node + '. Run it with the image\'s node (or install Node.js ' + minimum + ').',
  };
  process.stdout.write(JSON.stringify(line) + '\n');
  process.exit(EXIT_CODES.CONFIG.code);
}
