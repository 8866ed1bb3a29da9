// Drives the operator console in a real browser (Debian's chromium through playwright-core) the
// way an operator does, while the oid4vc-ts wallet (wallet.mjs) redeems the offer the operator
// made:
//   sign in with the API key; create an offer from the demo profile with a tx code and a webhook
//   override; see its QR code (an SVG Vellum drew), deep link and tx code, and the holder screen;
//   keep the sessions page open while the wallet redeems the offer, and see the session reach
//   SUCCESSFUL there without a reload; open the session: its timeline shows the seed's events,
//   each with its delivery to the webhook; redeliver one event from the page; look at the
//   overview, the profiles (and an API validation error pointed at its member) and the keys;
//   sign out, after which the old cookie opens nothing.
// A screenshot of every page goes to $VELLUM_SCREENSHOTS. Prints what it saw as one JSON object.
//
//   VELLUM_URL=http://127.0.0.1:7005 VELLUM_API_KEY=... VELLUM_WEBHOOK_URL=http://... \
//   VELLUM_SCREENSHOTS=dir node interop/console.mjs
import { spawn } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
const base = process.env.VELLUM_URL;
const apiKey = process.env.VELLUM_API_KEY;
const webhook = process.env.VELLUM_WEBHOOK_URL;
const shots = process.env.VELLUM_SCREENSHOTS;
const profile = process.env.VELLUM_PROFILE ?? 'demo-identity';
if (!base || !apiKey || !webhook || !shots) {
  console.error('set VELLUM_URL, VELLUM_API_KEY, VELLUM_WEBHOOK_URL and VELLUM_SCREENSHOTS');
  process.exit(2);
}
mkdirSync(shots, { recursive: true });
const WAIT = 30_000;

function wallet(offer, txCode) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(here, 'wallet.mjs'), offer, txCode], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (chunk) => { out += chunk; });
    child.stderr.on('data', (chunk) => { err += chunk; });
    child.on('close', (code) => (code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`wallet failed (${code}): ${err}`))));
  });
}

const seen = {};
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const problems = [];
  page.on('pageerror', (error) => problems.push(`page error: ${error.message}`));
  // Refused requests the test makes on purpose log "Failed to load resource"; anything else is a
  // defect of the page.
  page.on('console', (message) => {
    if (message.type() === 'error' && !message.text().startsWith('Failed to load resource')) problems.push(`console: ${message.text()}`);
  });
  page.on('requestfailed', (request) => {
    // Streams and images of a page the operator leaves are aborted: that is no failure.
    if (request.failure()?.errorText !== 'net::ERR_ABORTED') problems.push(`request failed: ${request.url()}`);
  });
  page.on('response', (response) => {
    if (response.status() === 404) problems.push(`not found: ${response.url()}`);
  });
  const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

  // Sign in: a wrong key is refused on the page; the right one gives a cookie no script reads.
  await page.goto(`${base}/console/`);
  await page.getByLabel('Management API key').fill('not-the-key');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByText('That is not the management API key.').waitFor({ timeout: WAIT });
  await shot('sign-in');
  await page.getByLabel('Management API key').fill(apiKey);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Overview' }).waitFor({ timeout: WAIT });
  const [cookie] = (await context.cookies()).filter((c) => c.name === 'vellum_console');
  seen.cookie = { httpOnly: cookie.httpOnly, sameSite: cookie.sameSite };
  seen.scriptSeesCookie = await page.evaluate(() => document.cookie.includes('vellum_console'));
  seen.keyInStorage = await page.evaluate((key) => JSON.stringify({ ...localStorage, ...sessionStorage }).includes(key), apiKey);

  // An offer from the form, with a tx code and this test's webhook.
  await page.getByRole('link', { name: 'New offer' }).click();
  await page.getByLabel('Profile', { exact: true }).selectOption(profile);
  await page.getByLabel('Transaction code', { exact: true }).selectOption('numeric');
  await page.getByLabel('Code length', { exact: true }).fill('6');
  await page.getByLabel('Webhook override (URL)', { exact: true }).fill(webhook);
  await shot('offer-form');
  await page.getByRole('button', { name: 'Create offer' }).click();
  const qr = page.locator('#offer-qr');
  await qr.waitFor({ timeout: WAIT });
  await page.waitForFunction(() => document.getElementById('offer-qr')?.naturalWidth > 0, null, { timeout: WAIT });
  const offerUri = await page.locator('#deep-link').getAttribute('href');
  const txCode = (await page.locator('#tx-code').textContent()).trim();
  const sessionId = new URL(page.url()).pathname.split('/').at(-1);
  seen.sessionId = sessionId;
  seen.offer = { uri: offerUri.startsWith('openid-credential-offer://'), txCodeDigits: /^\d{6}$/.test(txCode), qrWidth: await qr.evaluate((img) => img.naturalWidth) };
  await shot('offer');

  // The holder screen: the QR code alone.
  const [holder] = await Promise.all([context.waitForEvent('page'), page.locator('#holder-link').click()]);
  await holder.getByRole('heading', { name: 'Scan with your wallet' }).waitFor({ timeout: WAIT });
  await holder.waitForFunction(() => document.querySelector('img.qr')?.naturalWidth > 0, null, { timeout: WAIT });
  seen.holderNav = await holder.locator('nav').isVisible();
  await holder.screenshot({ path: join(shots, 'holder.png') });

  // The sessions page stays open while the wallet redeems the offer.
  await page.getByRole('link', { name: 'Sessions' }).click();
  const row = page.locator(`#session-${sessionId}`);
  await row.waitFor({ timeout: WAIT });
  seen.statusBefore = await row.getAttribute('data-status');
  await page.evaluate(() => { window.notReloaded = true; });
  const redeemed = await wallet(offerUri, txCode);
  seen.walletVerified = redeemed.verified === true;
  await page.waitForSelector(`#session-${sessionId}[data-status="SUCCESSFUL"]`, { timeout: WAIT });
  seen.statusAfter = await row.getAttribute('data-status');
  seen.withoutReload = await page.evaluate(() => window.notReloaded === true);
  await shot('sessions');
  // The holder screen learns the offer is used.
  await holder.getByRole('heading', { name: 'This offer is no longer available' }).waitFor({ timeout: WAIT });
  await holder.close();

  // The session's timeline, each event with its delivery; every delivery reaches DELIVERED.
  await row.getByRole('link').click();
  await page.locator('#timeline > li').first().waitFor({ timeout: WAIT });
  await page.waitForFunction(() => {
    const items = [...document.querySelectorAll('#timeline > li')];
    return items.length > 0 && items.every((item) => item.querySelector('.delivery .badge.DELIVERED'));
  }, null, { timeout: WAIT });
  seen.timeline = await page.locator('#timeline > li').evaluateAll((items) => items.map((item) => ({
    type: item.dataset.type,
    id: item.id.replace('event-', ''),
    deliveries: [...item.querySelectorAll('.delivery')].map((d) => ({
      status: d.querySelector('.badge').textContent,
      url: d.querySelector('code').textContent,
      attempts: d.querySelectorAll('ol > li').length,
    })),
  })));
  await shot('session');

  // Redeliver the issuance event from the page: a second attempt appears.
  const issued = page.locator('#timeline > li[data-type="sdjwt_issue"]');
  const attemptsBefore = await issued.locator('.delivery ol > li').count();
  await issued.getByRole('button', { name: /^Redeliver sdjwt_issue/ }).click();
  await page.waitForFunction((before) => {
    const item = document.querySelector('#timeline > li[data-type="sdjwt_issue"]');
    return item && item.querySelectorAll('.delivery ol > li').length > before
      && item.querySelector('.delivery .badge.DELIVERED');
  }, attemptsBefore, { timeout: WAIT });
  seen.redelivered = {
    eventId: (await issued.getAttribute('id')).replace('event-', ''),
    attempts: await issued.locator('.delivery ol > li').count(),
  };

  // The overview counts the session and its deliveries.
  await page.getByRole('link', { name: 'Overview' }).click();
  await page.locator('#sessions-SUCCESSFUL .figure').waitFor({ timeout: WAIT });
  seen.overview = {
    successful: Number(await page.locator('#sessions-SUCCESSFUL .figure').textContent()),
    delivered: Number(await page.locator('#deliveries-DELIVERED .figure').textContent()),
  };
  await shot('overview');

  // Profiles: the list, and the editor pointing at the member an API error names.
  await page.getByRole('link', { name: 'Profiles' }).click();
  await page.getByRole('link', { name: profile, exact: true }).click();
  const editor = page.getByLabel(/Definition/);
  await editor.waitFor({ timeout: WAIT });
  const definition = JSON.parse(await editor.inputValue());
  definition.mapping = { ...definition.mapping, jti: '<no-such-function>' };
  await editor.fill(JSON.stringify(definition, null, 2));
  await page.getByRole('button', { name: 'Save new version' }).click();
  await page.locator('#editor-problem .error').waitFor({ timeout: WAIT });
  seen.profileError = {
    text: await page.locator('#editor-problem .error').textContent(),
    member: await page.locator('#error-member').textContent().catch(() => null),
    selected: await page.evaluate(() => {
      const area = document.getElementById('definition');
      return area.value.slice(area.selectionStart, area.selectionEnd);
    }),
  };
  await shot('profile');

  // Keys.
  await page.getByRole('link', { name: 'Keys' }).click();
  await page.getByRole('heading', { name: 'Generate a key' }).waitFor({ timeout: WAIT });
  seen.keys = await page.locator('table tbody tr').count();
  await shot('keys');

  // A phone-sized window still shows the navigation and the sessions table.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole('link', { name: 'Sessions' }).click();
  await page.locator(`#session-${sessionId}`).waitFor({ timeout: WAIT });
  await shot('sessions-phone');
  await page.setViewportSize({ width: 1280, height: 900 });

  // Sign out: the page asks for the key again and the old cookie opens nothing.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByText('Signed out.').waitFor({ timeout: WAIT });
  seen.afterSignOut = await page.evaluate(async (url) => (await fetch(url)).status, `${base}/api/v1/sessions`);
  const replay = await fetch(`${base}/api/v1/sessions`, { headers: { Cookie: `vellum_console=${cookie.value}` } });
  seen.oldCookie = replay.status;
  seen.problems = problems;
} finally {
  await browser.close();
}
console.log(JSON.stringify(seen));
