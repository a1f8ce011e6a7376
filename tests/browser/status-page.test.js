// The status page in a real browser (Debian's Chromium driven by
// playwright-core), against the real binary that scripts/browser-test.sh
// starts. Run it through that script; it sets:
//   LD_URL        the distributor, e.g. http://127.0.0.1:PORT
//   LD_ARTIFACTS  where screenshots go (target/browser)
//   CHROMIUM      the browser executable (/usr/bin/chromium)
//
// The distributor's configuration (written by the script) makes every
// number on the page predictable:
//   - analyzers A-D weighted 40/30/20/10, simulated, no processing time,
//     health probes that never fail, no ejection after failed deliveries;
//   - analyzer D (analyzer-a4) fails every delivery and retry.max_retries is
//     0, so each packet routed to D goes straight to the dead letter. That is
//     how this test gets dead letters, deterministically, without a second
//     distributor. It does not distort the shares: the share bars count
//     routing decisions, and a failed delivery was still routed (and with no
//     retries nothing is routed twice).
//   - Before replaying, the test forces D out of rotation, so the replayed
//     packets go to healthy analyzers and leave the dead letter for good.
//
// The tests run in order and share one page: each starts from the state the
// previous one left.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const BASE = process.env.LD_URL;
const ARTIFACTS = process.env.LD_ARTIFACTS || path.join(__dirname, '..', '..', 'target', 'browser');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
const TEST_TIMEOUT = 30_000;

if (!BASE) throw new Error('LD_URL is not set: run scripts/browser-test.sh');

const WEIGHTS = { 'analyzer-a1': 40, 'analyzer-a2': 30, 'analyzer-a3': 20, 'analyzer-a4': 10 };
const NAMES = { 'analyzer-a1': 'Analyzer A', 'analyzer-a2': 'Analyzer B', 'analyzer-a3': 'Analyzer C', 'analyzer-a4': 'Analyzer D' };

let context;
let page;
let userDataDir;
const pageErrors = [];
const cspViolations = [];

// ---------------------------------------------------------------- helpers

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Retries `check` (which throws on mismatch) until it passes or time runs out. */
async function eventually(what, check, timeout = 15_000) {
  const deadline = Date.now() + timeout;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) {
        error.message = `${what}: still failing after ${timeout} ms: ${error.message}`;
        throw error;
      }
    }
    await sleep(150);
  }
}

async function apiGet(pathname) {
  const response = await fetch(BASE + pathname);
  return { status: response.status, body: await response.json() };
}

async function apiPost(pathname, body) {
  const response = await fetch(BASE + pathname, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: response.status, body: await response.json() };
}

let sent = 0;

/** Posts `count` packets of 3 messages, in requests of 100, spread over ~`spreadMs`. */
async function postPackets(count, spreadMs = 2000) {
  const requests = Math.ceil(count / 100);
  for (let r = 0; r < requests; r++) {
    const packets = [];
    for (let i = 0; i < Math.min(100, count - r * 100); i++) {
      sent++;
      packets.push({
        id: `browser-${sent}`,
        messages: ['INFO', 'WARNING', 'ERROR'].map((level) => ({
          level,
          message: `browser test message ${sent} ${level}`,
          source: 'browser-test',
        })),
      });
    }
    const { status, body } = await apiPost('/api/v1/logs', packets);
    assert.equal(status, 202, JSON.stringify(body));
    if (r + 1 < requests) await sleep(spreadMs / requests);
  }
}

/** What the page shows for each analyzer, read from the DOM. */
function readRows() {
  return page.$$eval('[data-testid="analyzer-row"]', (rows) =>
    rows.map((row) => {
      const text = (id) => row.querySelector(`[data-testid="${id}"]`).textContent.trim();
      const health = row.querySelector('[data-testid="health"]');
      const button = row.querySelector('[data-testid="toggle-health"]');
      return {
        id: row.dataset.analyzerId,
        name: row.querySelector('.a-name').textContent.trim(),
        endpoint: text('endpoint'),
        target: text('target-share'),
        actual: parseFloat(text('actual-share')),
        healthText: health.innerText.replace(/\s+/g, ' ').trim(),
        reason: health.dataset.reason,
        mode: text('health-mode'),
        processed: text('processed'),
        errors: text('errors'),
        button: button.textContent.trim(),
        buttonLabel: button.getAttribute('aria-label'),
        buttonDisabled: button.disabled,
      };
    }),
  );
}

async function row(id) {
  const found = (await readRows()).find((r) => r.id === id);
  assert.ok(found, `no row for ${id}`);
  return found;
}

function toggle(id) {
  return page.locator(`[data-testid="analyzer-row"][data-analyzer-id="${id}"] [data-testid="toggle-health"]`);
}

async function visible(testid) {
  return page.locator(`[data-testid="${testid}"]`).isVisible();
}

async function text(testid) {
  return (await page.locator(`[data-testid="${testid}"]`).first().textContent()).replace(/\s+/g, ' ').trim();
}

function assertShares(rows, expected) {
  for (const [id, share] of Object.entries(expected)) {
    const r = rows.find((x) => x.id === id);
    assert.ok(Math.abs(r.actual - share) <= 1, `${id}: actual share ${r.actual}% is not within 1 point of ${share.toFixed(2)}%`);
  }
}

async function screenshot(name, options = {}) {
  const file = path.join(ARTIFACTS, name);
  await page.evaluate(() => window.scrollTo(0, 0));
  await page.mouse.move(0, 0);
  await page.screenshot({ path: file, fullPage: true, ...options });
  return file;
}

// ---------------------------------------------------------------- set-up

before(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ld-chromium-'));
  context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    // This machine has no outside network: nothing in the background.
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 900 },
    colorScheme: 'light',
    timeout: 30_000,
  });
  context.setDefaultTimeout(10_000);
  page = context.pages()[0] || (await context.newPage());
  page.on('pageerror', (error) => pageErrors.push(String(error)));
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) cspViolations.push(message.text());
  });
  await eventually('the distributor is ready', async () => {
    const { status } = await apiGet('/readyz');
    assert.equal(status, 200);
  });
});

after(async () => {
  if (context) await context.close();
  if (userDataDir) fs.rmSync(userDataDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- tests

test('the binary serves the page and its assets, with types and revalidation', { timeout: TEST_TIMEOUT }, async () => {
  for (const [pathname, type] of [
    ['/', 'text/html'],
    ['/ui/app.js', 'text/javascript'],
    ['/ui/style.css', 'text/css'],
    ['/ui/favicon.svg', 'image/svg+xml'],
  ]) {
    const response = await fetch(BASE + pathname);
    assert.equal(response.status, 200, pathname);
    const contentType = response.headers.get('content-type');
    assert.ok(contentType.startsWith(type), `${pathname}: ${contentType}`);
    assert.equal(response.headers.get('cache-control'), 'no-cache', pathname);
    const etag = response.headers.get('etag');
    assert.ok(etag, `${pathname} has an ETag`);
    const again = await fetch(BASE + pathname, { headers: { 'If-None-Match': etag } });
    assert.equal(again.status, 304, `${pathname} revalidates to 304`);
  }
  assert.equal((await fetch(`${BASE}/ui/missing.js`)).status, 404);
});

test('shows the four analyzers with endpoint, target share and health', { timeout: TEST_TIMEOUT }, async () => {
  await page.goto(BASE + '/');
  assert.equal(await page.title(), 'logs-distributor status');
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  assert.match(await page.getAttribute('meta[name="viewport"]', 'content'), /width=device-width/);

  const rows = await eventually('four analyzer rows', async () => {
    const rows = await readRows();
    assert.equal(rows.length, 4);
    return rows;
  });
  assert.deepEqual(rows.map((r) => r.id), Object.keys(WEIGHTS));
  for (const r of rows) {
    assert.equal(r.name, NAMES[r.id]);
    assert.equal(r.endpoint, 'simulated');
    assert.equal(r.target, `${WEIGHTS[r.id].toFixed(1)}%`, `${r.id} target share`);
    assert.match(r.healthText, /^Healthy/);
    assert.match(r.mode, /auto/);
    assert.equal(r.button, 'Force out');
    assert.equal(r.buttonLabel, `Force out: ${r.name}`);
    assert.equal(r.buttonDisabled, false);
  }
  await eventually('health summary and storage state', async () => {
    assert.match(await text('health-summary'), /^healthy · 4\/4 in rotation/);
    assert.equal(await text('storage-state'), 'storage: ready');
  });
  assert.equal(await visible('no-healthy-banner'), false);
  assert.equal(await visible('unreachable-banner'), false);
  assert.equal(await visible('dead-letter-empty'), true);
  assert.equal(await page.locator('[data-testid="replay-all"]').isDisabled(), true);
});

test('posted packets move the actual-share bars to the weights', { timeout: TEST_TIMEOUT }, async () => {
  await postPackets(1000, 2500);
  await eventually('actual shares 40/30/20/10 within a point', async () => {
    assertShares(await readRows(), { 'analyzer-a1': 40, 'analyzer-a2': 30, 'analyzer-a3': 20, 'analyzer-a4': 10 });
  });
  // The bars' widths follow the numbers.
  const width = await page.$eval(
    '[data-analyzer-id="analyzer-a1"] .bar:not(.bar-target) > span',
    (bar) => parseFloat(bar.style.width),
  );
  assert.ok(Math.abs(width - 40) <= 1, `bar width ${width}%`);
  await eventually('packet rate and sparkline', async () => {
    const d = await page.getAttribute('#pps-spark .spark-line', 'd');
    assert.ok(d && d.startsWith('M'), `sparkline path: ${d}`);
    const note = await page.textContent('#pps-note');
    const peak = parseFloat(note.replace(/^peak /, '').replace(/,/g, ''));
    assert.ok(peak > 0, `peak packets/s: ${note}`);
    assert.match(await text('packets-per-sec'), /^[\d.,]+$/);
  });
  await eventually('analyzer D fails every delivery', async () => {
    const d = await row('analyzer-a4');
    assert.equal(d.processed, '0');
    assert.equal(d.errors, '100');
  });
});

test('forcing analyzer-a1 out marks it unhealthy and its share drops', { timeout: TEST_TIMEOUT }, async () => {
  // Hold the request for a moment so that the running state can be seen.
  let release;
  const held = new Promise((resolve) => (release = resolve));
  const sentBodies = [];
  await page.route('**/api/v1/analyzers/analyzer-a1/health', async (route) => {
    sentBodies.push(route.request().postDataJSON());
    await held;
    await route.continue();
  });
  await toggle('analyzer-a1').click();
  await eventually('the button is disabled while the request runs', async () => {
    const a = await row('analyzer-a1');
    assert.equal(a.buttonDisabled, true);
    assert.equal(a.button, 'Forcing out…');
  });
  release();
  await eventually('analyzer-a1 is forced unhealthy', async () => {
    const a = await row('analyzer-a1');
    assert.equal(a.reason, 'ForcedUnhealthy');
    assert.match(a.healthText, /^Unhealthy forced out by an operator unhealthy since/);
    assert.match(a.mode, /forced unhealthy/);
    assert.equal(a.button, 'Back to auto');
    assert.equal(a.buttonDisabled, false);
    assert.match(await text('health-summary'), /^degraded · 3\/4 in rotation/);
  });
  await page.unroute('**/api/v1/analyzers/analyzer-a1/health');
  assert.deepEqual(sentBodies, [{ healthy: false }]);
  const { body } = await apiGet('/api/v1/analyzers');
  assert.equal(body.analyzers['analyzer-a1'].health_mode, 'force_unhealthy');
  assert.equal(body.analyzers['analyzer-a1'].in_rotation, false);

  // 1000 more packets go to B/C/D 3:2:1; over the last minute A then has
  // 400 of 2000 routing decisions.
  await postPackets(1000, 2500);
  await eventually('actual shares after A left', async () => {
    assertShares(await readRows(), {
      'analyzer-a1': 20,
      'analyzer-a2': 40,
      'analyzer-a3': 80 / 3,
      'analyzer-a4': 40 / 3,
    });
  });
  const a = await row('analyzer-a1');
  assert.equal(a.target, '40.0%', 'the target share stays the configured one');
  assert.equal(a.processed, '400');
  await screenshot('status-page.png');
});

test('dead letters are listed and can be replayed, one and all', { timeout: TEST_TIMEOUT }, async () => {
  const { body: dead } = await apiGet('/api/v1/dead-letter?limit=10000');
  assert.ok(dead.total >= 200, `dead letters: ${dead.total}`);
  await eventually('the newest ten dead letters are listed', async () => {
    const ids = await page.$$eval('[data-testid="dead-letter-row"]', (rows) => rows.map((r) => r.dataset.packetId));
    const newest = dead.packets.slice(-10).map((e) => e.packet.id).reverse();
    assert.deepEqual(ids, newest);
    assert.equal(await text('dead-letter-count'), `newest 10 of ${dead.total}`);
    assert.equal(await text('replay-all'), `Replay all (${dead.total})`);
    assert.match(await text('final-error'), /analyzer crashed during processing/);
  });

  // Take the failing analyzer out first, so that the replays succeed.
  await toggle('analyzer-a4').click();
  await eventually('analyzer-a4 is forced out', async () => {
    assert.equal((await row('analyzer-a4')).reason, 'ForcedUnhealthy');
  });
  const before = (await apiGet('/api/v1/stats')).body;

  const first = page.locator('[data-testid="dead-letter-row"]').first();
  const id = await first.getAttribute('data-packet-id');
  await first.locator('[data-testid="replay-one"]').click();
  await eventually(`${id} leaves the list`, async () => {
    assert.equal(await page.locator(`[data-testid="dead-letter-row"][data-packet-id="${id}"]`).count(), 0);
    assert.equal(await text('dead-letter-count'), `newest 10 of ${dead.total - 1}`);
  });
  await eventually(`${id} is delivered`, async () => {
    const stats = (await apiGet('/api/v1/stats')).body;
    assert.equal(stats.in_flight, 0);
    assert.equal(stats.total_dead_lettered, before.total_dead_lettered, 'the replay failed again');
    const delivered = (s) => Object.values(s.analyzers).reduce((sum, a) => sum + a.processed_count, 0);
    assert.equal(delivered(stats), delivered(before) + 1);
  });

  await page.locator('[data-testid="replay-all"]').click();
  await eventually('the dead letter is empty', async () => {
    assert.equal(await page.locator('[data-testid="dead-letter-row"]').count(), 0);
    assert.equal(await visible('dead-letter-empty'), true);
    assert.equal(await page.locator('[data-testid="replay-all"]').isDisabled(), true);
  });
  await eventually('every replayed packet is delivered', async () => {
    const stats = (await apiGet('/api/v1/stats')).body;
    assert.equal(stats.in_flight, 0);
    assert.equal(stats.total_dead_lettered, before.total_dead_lettered);
    const delivered = (s) => Object.values(s.analyzers).reduce((sum, a) => sum + a.processed_count, 0);
    assert.equal(delivered(stats), delivered(before) + dead.total);
    assert.equal((await apiGet('/api/v1/dead-letter')).body.total, 0);
  });
});

test('with no analyzer in rotation a banner says packets are waiting', { timeout: TEST_TIMEOUT }, async () => {
  for (const id of ['analyzer-a2', 'analyzer-a3']) {
    assert.equal((await apiPost(`/api/v1/analyzers/${id}/health`, { healthy: false })).status, 200);
  }
  await eventually('the banner shows', async () => {
    assert.equal(await visible('no-healthy-banner'), true);
    assert.match(await text('no-healthy-banner'), /^No analyzer is healthy: packets are waiting\./);
    assert.match(await text('health-summary'), /^unhealthy · 0\/4 in rotation/);
  });
  await postPackets(50, 0);
  await eventually('the waiting packets are counted', async () => {
    assert.match(await text('no-healthy-banner'), /50 packets waiting/);
    assert.equal(await text('in-flight'), '50');
  });
  await screenshot('no-healthy.png', { fullPage: false });

  await toggle('analyzer-a2').click();
  await eventually('the banner goes and the packets are delivered', async () => {
    assert.equal(await visible('no-healthy-banner'), false);
    assert.equal(await text('in-flight'), '0');
    const b = await row('analyzer-a2');
    assert.equal(b.button, 'Force out');
    assert.match(b.mode, /auto/);
  });
});

test('when the API cannot be reached the page says so and keeps retrying', { timeout: TEST_TIMEOUT }, async () => {
  const cut = (route) => route.abort('connectionrefused');
  await page.route('**/api/v1/**', cut);
  await page.route('**/readyz', cut);
  await eventually('the unreachable banner shows', async () => {
    assert.equal(await visible('unreachable-banner'), true);
    assert.match(await text('unreachable-banner'), /^Cannot reach the distributor\..*Retrying/);
    assert.match(await text('health-summary'), /unreachable/);
  });
  await screenshot('unreachable.png', { fullPage: false });
  await page.unroute('**/api/v1/**', cut);
  await page.unroute('**/readyz', cut);
  await eventually('the page recovers by itself', async () => {
    assert.equal(await visible('unreachable-banner'), false);
    assert.match(await text('health-summary'), /^degraded/);
  });
});

test('a bearer token from localStorage is sent, and 401 disables the buttons', { timeout: TEST_TIMEOUT }, async () => {
  await page.evaluate(() => localStorage.setItem('ld-token', 'secret-test-token'));
  const seen = [];
  await page.route('**/api/v1/analyzers/analyzer-a3/health', async (route) => {
    seen.push(route.request().headers().authorization);
    await route.fulfill({ status: 401, contentType: 'application/json', body: '{"error": "a token is required"}' });
  });
  const stats = page.waitForRequest((request) => request.url().endsWith('/api/v1/stats'));
  assert.equal((await stats).headers().authorization, 'Bearer secret-test-token');

  await toggle('analyzer-a3').click();
  await eventually('access refused: buttons disabled, reason shown', async () => {
    assert.equal(await visible('auth-banner'), true);
    assert.match(await text('auth-banner'), /401/);
    assert.match(await text('action-error'), /a token is required/);
    for (const r of await readRows()) assert.equal(r.buttonDisabled, true, r.id);
  });
  assert.deepEqual(seen, ['Bearer secret-test-token']);
  await page.unroute('**/api/v1/analyzers/analyzer-a3/health');

  // Another token (here: none) enables them again.
  await page.evaluate(() => localStorage.removeItem('ld-token'));
  await eventually('buttons enabled again', async () => {
    assert.equal(await visible('auth-banner'), false);
    for (const r of await readRows()) assert.equal(r.buttonDisabled, false, r.id);
  });
  await page.click('#action-error-close');
  assert.equal(await visible('action-error'), false);
});

test('readable on a phone: no sideways scrolling, every button named', { timeout: TEST_TIMEOUT }, async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.reload();
  await eventually('rows rendered', async () => assert.equal((await readRows()).length, 4));
  for (const width of [320, 390, 800, 1024, 1120, 1280]) {
    await page.setViewportSize({ width, height: 844 });
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `at ${width}px the page is ${overflow}px too wide`);
  }
  await page.setViewportSize({ width: 390, height: 844 });
  const unnamed = await page.$$eval('button', (buttons) =>
    buttons.filter((b) => !(b.getAttribute('aria-label') || b.textContent).trim()).map((b) => b.outerHTML),
  );
  assert.deepEqual(unnamed, []);
  await screenshot('status-page-phone.png');
  await page.setViewportSize({ width: 1280, height: 900 });
});

test('no script errors and no content-security-policy violations', () => {
  assert.deepEqual(pageErrors, []);
  assert.deepEqual(cspViolations, []);
});
