// The dashboard's static assets (src/ui/, browser code) and how the admin API serves them at /ui/.
//
//   1. where they come from: `npm run build` writes them next to the bundle (dist/ui/, see
//      scripts/build.ts), so a built gateway needs no esbuild at run time. Running from source
//      (`npm run demo`, the tests through tsx) there is no such folder: the first request bundles
//      src/ui/ with esbuild's API (a devDependency, ~0.3 s) and keeps the result in memory
//   2. index.html names app.js and app.css with `?v=<content hash>`, so those are cached for a
//      year (immutable) and the page itself is revalidated (ETag) on every load
//   3. no token: the assets hold no data (every data call the page makes carries the token); a
//      strict Content-Security-Policy: scripts, styles and fetches from this origin only, no
//      inline script, no framing. Everything is served from here: no CDN, works offline.
//
// UI libraries: Preact (3 kB, React's API, actively released) renders the page; Chart.js 4 draws
// the charts (actively released; uPlot, the smaller choice, has had no release since 2025-05).
// Both are bundled into app.js.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

/** One servable asset. */
export interface UiAsset {
  body: Buffer;
  contentType: string;
  cacheControl: string;
  etag: string;
}

/** The Content-Security-Policy of every /ui/ answer (step 3). */
export const UI_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const TYPES: Record<string, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
};
const SOURCE_DIR = fileURLToPath(new URL('../ui/', import.meta.url));

/**
 * Bundles src/ui/ with esbuild (step 1): app.js (minified ES module, Preact and Chart.js inside),
 * app.css and index.html naming both by content hash. Needs the esbuild package (a
 * devDependency); throws naming the file when src/ui/ does not bundle.
 */
export async function bundleUi(): Promise<Map<string, Buffer>> {
  const { build } = await import('esbuild');
  const result = await build({
    entryPoints: { app: `${SOURCE_DIR}main.ts` },
    bundle: true,
    write: false,
    outdir: '/ui',
    format: 'esm',
    platform: 'browser',
    target: ['chrome110', 'firefox110', 'safari16'],
    minify: true,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const js = result.outputFiles.find((f) => f.path.endsWith('.js'));
  if (!js) throw new Error('dashboard bundle: esbuild produced no app.js');
  const css = await readFile(`${SOURCE_DIR}style.css`);
  const version = createHash('sha256').update(js.contents).update(css).digest('hex').slice(0, 12);
  const html = (await readFile(`${SOURCE_DIR}index.html`, 'utf8')).replaceAll('%VERSION%', version);
  return new Map([
    ['index.html', Buffer.from(html)],
    ['app.js', Buffer.from(js.contents)],
    ['app.css', css],
  ]);
}

/**
 * The assets the admin API serves, loaded once (step 1): from `prebuiltDir` when it holds
 * index.html, else bundled from source. A failure is kept for 10 s (then tried again) and
 * answered 503 naming the fix.
 */
export class UiAssets {
  readonly #prebuiltDir: string;
  #loading: Promise<Map<string, UiAsset>> | undefined;

  /** `prebuiltDir`: where `npm run build` put them; default `ui/` next to this module (the bundle's). */
  constructor(prebuiltDir = fileURLToPath(new URL('./ui/', import.meta.url))) {
    this.#prebuiltDir = prebuiltDir.endsWith('/') ? prebuiltDir : `${prebuiltDir}/`;
  }

  /** The asset named `file` (index.html, app.js, app.css), or undefined for any other name. */
  async get(file: string): Promise<UiAsset | undefined> {
    if (!(file in TYPES)) return undefined;
    this.#loading ??= this.#load().catch((err: unknown) => {
      setTimeout(() => (this.#loading = undefined), 10_000).unref();
      throw err;
    });
    return (await this.#loading).get(file);
  }

  async #load(): Promise<Map<string, UiAsset>> {
    const files = await this.#readPrebuilt().catch(() => undefined) ?? (await bundleUi());
    const assets = new Map<string, UiAsset>();
    for (const [name, body] of files) {
      // Step 2: only index.html is fetched under a fixed URL; the others carry ?v=<hash>.
      const cacheControl = name === 'index.html' ? 'no-cache' : 'public, max-age=31536000, immutable';
      assets.set(name, { body, contentType: TYPES[name]!, cacheControl, etag: `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"` });
    }
    return assets;
  }

  async #readPrebuilt(): Promise<Map<string, Buffer>> {
    const names = Object.keys(TYPES);
    const bodies = await Promise.all(names.map((name) => readFile(`${this.#prebuiltDir}${name}`)));
    return new Map(names.map((name, i) => [name, bodies[i]!]));
  }
}

/**
 * Answers GET/HEAD /ui and /ui/* (step 3, no token): /ui redirects to /ui/, /ui/ is index.html,
 * an unknown file is 404. Returns false when `path` is not the dashboard's.
 */
export async function serveUi(assets: UiAssets, path: string, req: IncomingMessage, res: ServerResponse): Promise<boolean> {
  if (path !== '/ui' && !path.startsWith('/ui/')) return false;
  const headers = { 'content-security-policy': UI_CSP, 'x-content-type-options': 'nosniff', 'referrer-policy': 'no-referrer', 'x-frame-options': 'DENY' };
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { ...headers, allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8' }).end('method not allowed: the dashboard is read with GET\n');
    return true;
  }
  if (path === '/ui') {
    res.writeHead(308, { ...headers, location: '/ui/' }).end();
    return true;
  }
  const file = path === '/ui/' ? 'index.html' : path.slice('/ui/'.length);
  let asset: UiAsset | undefined;
  try {
    asset = await assets.get(file);
  } catch (err) {
    res.writeHead(503, { ...headers, 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
    res.end(`dashboard assets are not available: ${(err as Error).message} (run \`npm run build\`, or install the devDependencies to bundle src/ui/ on demand)\n`);
    return true;
  }
  if (!asset) {
    res.writeHead(404, { ...headers, 'content-type': 'text/plain; charset=utf-8' }).end(`no such dashboard file: ${path}\n`);
    return true;
  }
  const common = { ...headers, 'cache-control': asset.cacheControl, etag: asset.etag };
  if (req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, common).end();
    return true;
  }
  res.writeHead(200, { ...common, 'content-type': asset.contentType, 'content-length': asset.body.length });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
  return true;
}
