// The program's name and version, as the callback's user-agent and payload report them.

// Replaced by esbuild at bundle time (esbuild.config.mjs `define`); undefined when src/ runs unbundled.
declare const PLANB_VERSION: string | undefined;

// The package name, as the user-agent's product token.
export const PRODUCT = 'planb-backup';

// The bundled version, or a marker that this is an unbundled development run.
export const VERSION: string = typeof PLANB_VERSION === 'string' ? PLANB_VERSION : '0.0.0-dev';
