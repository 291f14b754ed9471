// The dashboard's entry point (bundled by esbuild into /ui/app.js: src/admin/ui-assets.ts).
// Browser code: it imports no module of the gateway, only Preact, Chart.js and its own files.
import { h, render } from 'preact';
import { App } from './app.ts';

render(h(App, null), document.getElementById('app')!);
