// Issue 17 acceptance, the dashboard in a real browser: Debian's Chromium driven by
// playwright-core (no browser download) against a real gateway and Pebble. The page loads
// without the token; sign in (the token kept in sessionStorage, never in a URL, sent as a
// header on every data call); a bound name shows its status; a name bound through the API
// appears live without a reload; its page shows it, and issuing from there shows the
// certificate. Screenshots go to test-output/ (docs/dashboard.png is a copy of dashboard.png).
import assert from 'node:assert/strict';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { adminCall } from '../support/admin.ts';
import { httpsGet } from '../support/clients.ts';
import { startTestGateway, type TestGateway } from '../support/gateway.ts';
import { startPebbleOnFreePorts, type PebbleHandle } from '../support/pebble.ts';
import { PROJECT_ROOT } from '../support/process.ts';
import { echoHandler, startUpstream, type FakeUpstream } from '../support/upstream.ts';

const TOKEN = 'dashboard-e2e-token-0123456789';
const FIRST = 'first.dashboard.test';
const SECOND = 'second.dashboard.test';
/** Generous: a loaded 2-core machine bundles the app, issues and renders slowly. */
const WAIT_MS = 90_000;
/** Screenshots go here (gitignored); docs/dashboard.png is a copy of dashboard.png. */
const OUTPUT = join(PROJECT_ROOT, 'test-output');

describe('dashboard in Chromium: sign in, a bound name with its status, a second one appears live, its page', () => {
  let pebble: PebbleHandle;
  let gw: TestGateway;
  let platform: FakeUpstream;
  let browser: Browser;
  let page: Page;
  let base: string;
  const requests: Array<{ url: string; authorization: string | undefined }> = [];
  const problems: string[] = [];
  const call = (method: string, path: string, body?: unknown) => adminCall(gw.gateway.adminPort!, method, path, { token: TOKEN, ...(body === undefined ? {} : { body }) });
  const apiStatus = async (name: string) => ((await call('GET', `/v1/domains/${name}`)).json as { status: string }).status;

  before(async () => {
    let httpsPort: number;
    let httpPort: number;
    let root: string;
    // 30-day certificates, so the expiry chart (next 90 days) has them.
    ({ pebble, httpsPort, httpPort, root } = await startPebbleOnFreePorts({ certificateValidityPeriod: 30 * 86_400 }));
    platform = await startUpstream(echoHandler('platform'));
    gw = await startTestGateway({ pebble, httpsPort, httpPort, config: { onDemand: { registry: true }, admin: { token: TOKEN }, proxy: { upstream: platform.origin } } });
    base = `http://127.0.0.1:${gw.gateway.adminPort!}`;
    // The first name is bound and has its certificate before the browser looks.
    assert.equal((await call('PUT', `/v1/domains/${FIRST}`, { tenant: 'alice' })).status, 201);
    assert.equal((await httpsGet(FIRST, httpsPort, root)).status, 200);
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true });
    page = await (await browser.newContext({ viewport: { width: 1280, height: 860 } })).newPage();
    page.setDefaultTimeout(WAIT_MS);
    page.on('request', (req) => requests.push({ url: req.url(), authorization: req.headers().authorization }));
    // A CSP violation or a script error shows up here; a 404 is an answer the page expects
    // (GET /v1/certificates/{name} before there is one).
    page.on('console', (msg) => msg.type() === 'error' && !/status of 404/.test(msg.text()) && problems.push(msg.text()));
    page.on('pageerror', (err) => problems.push(err.message));
  });

  after(async () => {
    await browser?.close();
    await gw?.close();
    await platform?.close();
    await pebble?.stop();
  });

  test('the page and its assets load without the token, all from the admin API', async () => {
    const res = await page.goto(`${base}/ui/`);
    assert.equal(res?.status(), 200);
    await page.getByRole('button', { name: 'Sign in' }).waitFor();
    assert.ok(requests.length >= 3, 'the page, app.js, app.css');
    assert.deepEqual(requests.filter((r) => !r.url.startsWith(`${base}/ui/`)), [], 'nothing but the dashboard’s own files (no CDN, no data) before sign-in');
    assert.ok(requests.every((r) => r.authorization === undefined));
  });

  test('sign in: the token stays in sessionStorage and headers; the bound name shows the status the API reports', async () => {
    await page.getByLabel('Admin token').fill(TOKEN);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const row = page.locator(`tr[data-name="${FIRST}"]`);
    await row.waitFor();
    assert.equal(await row.locator('[data-status]').textContent(), await apiStatus(FIRST));
    assert.equal(await page.evaluate(() => sessionStorage.getItem('certgate.admin-token')), TOKEN);
    const data = requests.filter((r) => new URL(r.url).pathname.startsWith('/v1/'));
    assert.ok(data.length > 0);
    assert.deepEqual(data.filter((r) => r.authorization !== `Bearer ${TOKEN}`), [], 'every data call carries the token');
    assert.ok(data.some((r) => new URL(r.url).pathname === '/v1/events'), 'the live stream, read with fetch and the header');
    // One page at a time (stays fast at 100,000 bindings): every list call is a bounded page.
    const lists = data.map((r) => new URL(r.url)).filter((u) => u.pathname === '/v1/domains');
    assert.ok(lists.length > 0 && lists.every((u) => Number(u.searchParams.get('limit')) <= 100), lists.join(' '));
    assert.deepEqual(requests.filter((r) => r.url.includes(TOKEN)), [], 'the token is in no URL');
    assert.ok(!page.url().includes(TOKEN));
  });

  test('a name bound through the API appears live, without a reload', async () => {
    // The stream is connected (else the event could come before it).
    await page.locator('#live.on').waitFor();
    await page.evaluate(() => Object.assign(globalThis, { notReloaded: true }));
    assert.equal((await call('PUT', `/v1/domains/${SECOND}`, { tenant: 'bob' })).status, 201);
    const row = page.locator(`tr[data-name="${SECOND}"]`);
    await row.waitFor();
    assert.equal(await page.evaluate(() => (globalThis as { notReloaded?: boolean }).notReloaded), true, 'same page, no reload');
    assert.equal(await row.locator('[data-status]').textContent(), await apiStatus(SECOND));
  });

  test('its page: status and events; Issue there shows the certificate', async () => {
    await page.getByRole('link', { name: SECOND }).click();
    const view = page.locator(`main.domain[data-domain="${SECOND}"]`);
    await view.waitFor();
    assert.equal(await view.locator('h2 [data-status]').textContent(), await apiStatus(SECOND));
    await view.locator('.events li', { hasText: 'domain-bound' }).waitFor();
    await view.getByRole('button', { name: 'Issue' }).click();
    await view.locator('tr', { hasText: 'Not after' }).waitFor();
    assert.match((await view.locator('tr', { hasText: 'Issuer' }).textContent()) ?? '', /Pebble/);
    await view.locator('.events li', { hasText: 'issuance-succeeded' }).waitFor();
    await mkdir(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, 'dashboard-hostname.png'), fullPage: true });
  });

  test('the overview with both names, their statuses and the charts: a screenshot; search', async () => {
    await page.getByRole('link', { name: '← All hostnames' }).click();
    for (const name of [FIRST, SECOND]) {
      // The badge shows what the API reports now (the second one's issuance arrived live).
      const status = await apiStatus(name);
      await page.locator(`tr[data-name="${name}"] [data-status="${status}"]`).waitFor();
    }
    await page.locator('#chart-expiry canvas').waitFor();
    await page.locator('#chart-hourly canvas').waitFor();
    await mkdir(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, 'dashboard.png'), fullPage: true });
    // Search asks the API (?q=) and shows only the names containing the text.
    await page.getByLabel('Search names').fill('SECOND');
    await page.locator(`tr[data-name="${FIRST}"]`).waitFor({ state: 'detached' });
    assert.equal(await page.locator('tr[data-name]').count(), 1);
    assert.ok(requests.some((r) => new URL(r.url).searchParams.get('q') === 'second'));
    assert.deepEqual(problems, [], 'no script error and no CSP violation in the page');
  });
});
