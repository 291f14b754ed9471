// undici, loaded at its first use (first proxied request, ask call or ACME request) rather than at
// start-up: it is ~150 ms of module loading per worker, and serving stored certificates needs none
// of it. undici is a CommonJS package, so a synchronous require keeps call sites synchronous.
// (The build's bundler leaves this require alone: undici is loaded from node_modules at run time.)
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const requireFromHere = createRequire(import.meta.url);
let loaded: typeof Undici | undefined;

/** The undici module, loaded on the first call (see the header). */
export function undici(): typeof Undici {
  return (loaded ??= requireFromHere('undici') as typeof Undici);
}
