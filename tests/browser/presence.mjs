// Drives the reference softphone's presence selector in headless Chromium for
// tests/browser_presence.rs: the page shows what the admin API sets (a NOTIFY reached JsSIP)
// and a state chosen in the page reaches the admin API (a PUBLISH reached the edge).
//
// Environment (set by tests/browser_presence.rs):
//   PAGE_URL        the edge's web listener, e.g. http://127.0.0.1:PORT/
//   ADMIN_URL       the admin listener;  ADMIN_TOKEN  its bearer token
//   AGENT, PASSWORD the agent to log in as
//   OUT_DIR         where a screenshot and the SIP the page exchanged are written
//   CHROMIUM        the browser (default /usr/bin/chromium)
//
// Steps are printed one per line as `step: ...`, the last one `step: done`. A failed
// expectation ends the script with exit code 1 and the reason on stderr.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name, fallback) => {
  const v = process.env[name] ?? fallback;
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
};
const PAGE_URL = env('PAGE_URL');
const ADMIN_URL = env('ADMIN_URL');
const ADMIN_TOKEN = env('ADMIN_TOKEN');
const AGENT = env('AGENT');
const PASSWORD = env('PASSWORD');
const OUT_DIR = env('OUT_DIR');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

// Generous: a loaded 2-core machine runs the edge and Chromium at once.
const T = 30_000;

const step = (what) => console.log(`step: ${what}`);
const fail = (what) => {
  throw new Error(what);
};
const expect = (ok, what) => {
  if (!ok) fail(what);
};

async function admin(path, method = 'GET', body = undefined) {
  const r = await fetch(new URL(path, ADMIN_URL), {
    method,
    headers: { Authorization: `Bearer ${ADMIN_TOKEN}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  expect(r.ok, `admin ${method} ${path}: ${r.status}`);
  return r.json();
}

async function adminPresenceBecomes(state) {
  const deadline = Date.now() + T;
  let last;
  while (Date.now() < deadline) {
    last = await admin(`/api/agents/${AGENT}/presence`);
    if (last.state === state) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`the admin API never reported ${state}: ${JSON.stringify(last)}`);
}

/** Waits until the page shows `state`: its state, the selector and the status text. */
async function pageShows(page, state, label) {
  await page.waitForFunction((s) => window.softphone.presence === s, state, { timeout: T });
  const select = page.getByLabel('Presence');
  expect((await select.inputValue()) === state, `selector shows ${await select.inputValue()}`);
  const text = await page.locator('#presence').textContent();
  expect(text.includes(label), `status text: ${text}`);
}

const browser = await chromium.launch({
  executablePath: CHROMIUM,
  args: ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream'],
});
const sip = [];
const errors = [];
let page;
try {
  const context = await browser.newContext({ permissions: ['microphone'] });
  page = await context.newPage();
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => sip.push({ dir: 'sent', text: String(f.payload) }));
    ws.on('framereceived', (f) => sip.push({ dir: 'received', text: String(f.payload) }));
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));

  await page.goto(PAGE_URL);
  await page.waitForFunction(() => window.JsSIP && window.softphone, null, { timeout: T });
  if (process.env.JSSIP_DEBUG) {
    page.on('console', (m) => console.error(m.text()));
    await page.evaluate(() => JsSIP.debug.enable('JsSIP:*'));
  }
  await page.getByLabel('Agent').fill(AGENT);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForSelector('main[data-reg="registered"]', { timeout: T });
  step('registered');

  // The SUBSCRIBE to our own AOR: the first NOTIFY shows the state the edge holds.
  await pageShows(page, 'available', 'Available');
  step('subscribed: available');

  // The admin API changes it: the NOTIFY reaches the page.
  await admin(`/api/agents/${AGENT}/presence`, 'PUT', { state: 'busy' });
  await pageShows(page, 'busy', 'Busy');
  step('admin busy shown');

  // A person chooses Away with the keyboard: the PUBLISH reaches the edge.
  const select = page.getByLabel('Presence');
  await select.focus();
  await select.selectOption('away');
  await adminPresenceBecomes('away');
  await pageShows(page, 'away', 'Away');
  step('away published');

  // A second choice modifies the same publication (SIP-If-Match).
  await select.selectOption('dnd');
  await adminPresenceBecomes('dnd');
  await pageShows(page, 'dnd', 'Do Not Disturb');
  step('dnd published');

  const sent = sip.filter((m) => m.dir === 'sent').map((m) => m.text);
  const received = sip.filter((m) => m.dir === 'received').map((m) => m.text);
  const publishes = sent.filter((t) => t.startsWith('PUBLISH '));
  expect(publishes.length >= 2, `PUBLISHes sent: ${publishes.length}`);
  expect(publishes.every((t) => /\r\nCSeq: \d+ PUBLISH\r\n/.test(t)), 'a PUBLISH with a wrong CSeq');
  expect(publishes.some((t) => /\r\nSIP-If-Match: /i.test(t)), 'no PUBLISH with SIP-If-Match');
  expect(publishes.some((t) => t.includes('<rpid:away/>')), 'no PUBLISH with the away activity');
  expect(sent.some((t) => t.startsWith('SUBSCRIBE ') && /\r\nEvent: presence\r\n/.test(t)), 'no SUBSCRIBE');
  expect(received.some((t) => t.startsWith('NOTIFY ')), 'no NOTIFY received');
  expect(errors.length === 0, `page errors: ${errors.join('; ')}`);
  await page.screenshot({ path: join(OUT_DIR, 'presence.png') });
  step('done');
} catch (e) {
  console.error(`${e.stack || e}\npage errors: ${errors.join('; ')}`);
  if (page) await page.screenshot({ path: join(OUT_DIR, 'presence-failed.png') }).catch(() => {});
  process.exitCode = 1;
} finally {
  writeFileSync(join(OUT_DIR, 'presence-sip.txt'), sip.map((m) => `--- ${m.dir}\n${m.text}`).join('\n'));
  await browser.close();
}
