// Drives the reference softphone in headless Chromium for tests/browser.rs.
//
// Environment (all set by tests/browser.rs):
//   PAGE_URL        the edge's web listener, e.g. http://127.0.0.1:PORT/
//   ADMIN_URL       the admin listener;  ADMIN_TOKEN  its bearer token
//   AGENT, PASSWORD the agent to log in as
//   AGENT2, PASSWORD2 a second agent (the second page): called browser to browser
//   CALL_NUMBER     an ordinary number routed to the SIPp trunk
//   EMERGENCY       the emergency number to dial (933)
//   OUT_DIR         where screenshots and the SIP the page sent are written
//   CHROMIUM        the browser (default /usr/bin/chromium)
//   PSAP_HOLDS      "1": the PSAP holds and resumes its callback, which the page must get as
//                   WebRTC re-offers, with audio after the resume (tests/browser.rs's SIPp)
//
// Steps are printed one per line as `step: ...`; `psap: ready` asks the test to start the PSAP
// callback, which the page must then ring with the priority banner. Any failed expectation
// ends the script with exit code 1 and the reason on stderr.
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
const AGENT2 = env('AGENT2');
const PASSWORD2 = env('PASSWORD2');
const CALL_NUMBER = env('CALL_NUMBER');
const EMERGENCY = env('EMERGENCY');
const OUT_DIR = env('OUT_DIR');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');
const PSAP_HOLDS = env('PSAP_HOLDS', '0') === '1';

// Generous: a loaded 2-core machine runs the edge, SIPp and Chromium at once.
const T = 30_000;
// Chicago: a point well inside the US.
const GEO = { latitude: 41.878113, longitude: -87.629799, accuracy: 30 };
// A phone-sized screen.
const PHONE = { width: 390, height: 844 };

const step = (what) => console.log(`step: ${what}`);
// The pages open now, for the report when a step fails.
const open = [];
const fail = (what) => {
  throw new Error(what);
};
const expect = (ok, what) => {
  if (!ok) fail(what);
};

async function admin(path) {
  const r = await fetch(new URL(path, ADMIN_URL), { headers: { Authorization: `Bearer ${ADMIN_TOKEN}` } });
  expect(r.ok, `admin ${path}: ${r.status}`);
  return r.json();
}

async function presenceBecomes(state) {
  const deadline = Date.now() + T;
  let last;
  while (Date.now() < deadline) {
    last = await admin(`/api/agents/${AGENT}/presence`);
    if (last.state === state) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`presence never became ${state}: ${JSON.stringify(last)}`);
}

/** A page in a fresh context, with every SIP message it sends and receives recorded. */
async function openPage(browser, { geolocation, at = GEO }) {
  const context = await browser.newContext({
    viewport: PHONE,
    permissions: geolocation ? ['geolocation', 'microphone'] : ['microphone'],
    geolocation: geolocation ? at : undefined,
  });
  // Every RTCPeerConnection the page makes, for getStats() from here (anchorReports).
  await context.addInitScript(() => {
    const Native = window.RTCPeerConnection;
    window.peerConnections = [];
    window.RTCPeerConnection = function RTCPeerConnection(...args) {
      const pc = new Native(...args);
      window.peerConnections.push(pc);
      return pc;
    };
    window.RTCPeerConnection.prototype = Native.prototype;
    Object.setPrototypeOf(window.RTCPeerConnection, Native);
  });
  const page = await context.newPage();
  const sip = [];
  const errors = [];
  open.push({ page, sip, errors });
  page.on('websocket', (ws) => {
    ws.on('framesent', (f) => sip.push({ dir: 'sent', text: String(f.payload) }));
    ws.on('framereceived', (f) => sip.push({ dir: 'received', text: String(f.payload) }));
  });
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`console: ${m.text()}`);
  });
  page.on('requestfailed', (r) => errors.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  return { context, page, sip, errors };
}

async function login(page, agent = AGENT, password = PASSWORD) {
  await page.goto(PAGE_URL);
  expect((await page.title()) === 'lifeline softphone', `title: ${await page.title()}`);
  await page.waitForFunction(() => window.JsSIP && window.softphone, null, { timeout: T });
  if (process.env.JSSIP_DEBUG) {
    // JSSIP_DEBUG=1 cargo test --test browser: JsSIP's own log on stderr.
    page.on('console', (m) => console.error(m.text()));
    await page.evaluate(() => JsSIP.debug.enable('JsSIP:*'));
  }
  await page.getByLabel('Agent').fill(agent);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Log in' }).click();
  await page.waitForSelector('main[data-reg="registered"]', { timeout: T });
}

/** Waits until the call's audio flowed both ways: at least `packets` sent and received (the
 * carrier echoes what it gets, so received audio went browser -> edge -> carrier -> edge ->
 * browser) and a level above silence was heard. Returns the last figures. */
async function audioFlows(page, what, packets = 50) {
  const deadline = Date.now() + T;
  let last = null;
  while (Date.now() < deadline) {
    last = await page.evaluate(() => window.softphoneAudio());
    if (last && last.sent >= packets && last.received >= packets && last.level > 0) {
      console.log(`audio: ${what} ${JSON.stringify(last)}`);
      return last;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  fail(`no audio both ways in the ${what}: ${JSON.stringify(last)}`);
}

/** The RTCP the page got from the edge's anchor in the call on its last peer connection:
 * waits until getStats() has both `remote-outbound-rtp` (from a sender report about the audio
 * the page receives) and `remote-inbound-rtp` (from a report block about the audio it sends),
 * and returns them with the page's own counts and the wall clock at that moment. */
async function anchorReports(page) {
  const deadline = Date.now() + T;
  let last = null;
  while (Date.now() < deadline) {
    last = await page.evaluate(async () => {
      const pcs = window.peerConnections;
      const out = { now: Date.now() };
      (await pcs[pcs.length - 1].getStats()).forEach((r) => {
        if (r.kind !== 'audio') return;
        const pick = (...keys) => Object.fromEntries(keys.map((k) => [k, r[k]]));
        if (r.type === 'inbound-rtp') out.inbound = pick('packetsReceived', 'ssrc');
        if (r.type === 'outbound-rtp') out.outbound = pick('packetsSent', 'ssrc');
        if (r.type === 'remote-outbound-rtp') {
          out.remoteOutbound = pick('packetsSent', 'bytesSent', 'remoteTimestamp', 'reportsSent', 'ssrc');
        }
        if (r.type === 'remote-inbound-rtp') {
          out.remoteInbound = pick(
            'packetsLost', 'jitter', 'fractionLost', 'roundTripTime', 'roundTripTimeMeasurements', 'ssrc',
          );
        }
      });
      return out;
    });
    if (last.remoteOutbound && last.remoteInbound) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  fail(`no RTCP reports from the edge: ${JSON.stringify(last)}`);
}

/** Waits until the page received `count` re-INVITEs (INVITEs with a To-tag) among its SIP
 * messages from index `from` on; their text. */
async function reInvites(sip, from, count) {
  const deadline = Date.now() + T;
  const got = () =>
    sip
      .slice(from)
      .filter((m) => m.dir === 'received' && m.text.startsWith('INVITE '))
      .map((m) => m.text)
      .filter((t) => /\r\nTo: [^\r\n]*;tag=/i.test(t));
  while (Date.now() < deadline) {
    if (got().length >= count) return got();
    await new Promise((r) => setTimeout(r, 100));
  }
  fail(`the page got ${got().length} re-INVITEs, not ${count}`);
}

async function callState(page, state) {
  await page.waitForSelector(`main[data-call="${state}"]`, { timeout: T });
}

/** The last INVITE the page sent whose Request-URI user is `user`. */
function sentInvite(sip, user) {
  const invites = sip.filter((m) => m.dir === 'sent' && m.text.startsWith(`INVITE sip:${user}@`));
  expect(invites.length > 0, `the page sent no INVITE to ${user}`);
  return invites[invites.length - 1].text;
}

function save(name, text) {
  writeFileSync(join(OUT_DIR, name), text);
}

async function main() {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: T,
    args: [
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--no-sandbox',
      '--allow-loopback-in-peer-connection',
    ],
  });
  try {
    const a = await openPage(browser, { geolocation: true });
    const { page } = a;

    step('login');
    await login(page);
    const regs = await admin('/api/registrations');
    expect(
      regs.some((r) => (r.aor === AGENT || r.aor.startsWith(`${AGENT}@`)) && /^wss?$/i.test(r.transport) && r.via_flow),
      `no WebSocket registration for ${AGENT}: ${JSON.stringify(regs)}`,
    );
    expect((await page.textContent('#status')).includes(`Registered as ${AGENT}`), 'status after login');
    await page.waitForFunction(() => window.softphone.location === 'on', null, { timeout: T });

    step('dialpad is keyboard operable and labelled');
    const pad = page.getByRole('group', { name: 'Dialpad' });
    expect((await pad.getByRole('button').count()) === 12, 'twelve dialpad keys');
    await pad.getByRole('button', { name: '5', exact: true }).focus();
    await page.keyboard.press('Enter');
    await page.keyboard.press('Tab');
    await page.keyboard.press('Space'); // the next key, 6
    expect((await page.inputValue('#number')) === '56', `dialpad by keyboard: ${await page.inputValue('#number')}`);
    await page.getByRole('button', { name: 'Delete last digit' }).click();
    await page.getByRole('button', { name: 'Delete last digit' }).click();

    step('ordinary call');
    await page.getByLabel('Number to dial').fill(CALL_NUMBER);
    await page.getByLabel('Number to dial').press('Enter');
    await callState(page, 'active');
    expect((await page.getAttribute('main', 'data-mode')) === 'normal', 'an ordinary call is not an emergency');
    await audioFlows(page, 'ordinary call');
    // Let the edge's media metrics see a few seconds of this call, then tell the test, which
    // reads /metrics while the call goes on.
    await new Promise((r) => setTimeout(r, 2500));
    const before = await page.evaluate(() => window.softphoneAudio());
    console.log('media: steady');
    // The test now throws garbage at the edge's WebRTC port: the call must not notice.
    await new Promise((r) => setTimeout(r, 2000));
    const after = await page.evaluate(() => window.softphoneAudio());
    expect(
      after.received - before.received >= 60 && after.lost === before.lost,
      `audio while garbage hit the media port: ${JSON.stringify(before)} -> ${JSON.stringify(after)}`,
    );
    // RTCP: the carrier (SIPp) sends none, so the anchor reports itself. Its SR counts what the
    // edge sent the page: the page's received count at the SR's time (20 ms a packet, same
    // clock on loopback), give or take half a second. Its report block is about the page's
    // own audio: nothing lost on loopback, a sane jitter, and a round trip from LSR/DLSR
    // (RFC 3550 §6.4.1) once the page's own SR reached the anchor.
    const rtcp = await anchorReports(page);
    console.log(`rtcp: ${JSON.stringify(rtcp)}`);
    const { remoteOutbound: ro, remoteInbound: ri, inbound } = rtcp;
    expect(ro.ssrc === inbound.ssrc && ri.ssrc === rtcp.outbound.ssrc, `report SSRCs: ${JSON.stringify(rtcp)}`);
    const atReport = inbound.packetsReceived - (rtcp.now - ro.remoteTimestamp) / 20;
    expect(
      ro.packetsSent > 50 && Math.abs(ro.packetsSent - atReport) <= 25,
      `the SR's packet count ${ro.packetsSent}, the page had ${atReport.toFixed(0)}: ${JSON.stringify(rtcp)}`,
    );
    expect(ro.bytesSent === 160 * ro.packetsSent, `the SR's octet count (PCMU): ${JSON.stringify(ro)}`);
    expect(ri.packetsLost >= 0 && ri.packetsLost <= 2 && ri.fractionLost <= 0.02, `loss: ${JSON.stringify(ri)}`);
    expect(ri.jitter >= 0 && ri.jitter < 0.1, `jitter: ${JSON.stringify(ri)}`);
    expect(
      !ri.roundTripTimeMeasurements || (ri.roundTripTime >= 0 && ri.roundTripTime < 0.5),
      `round trip: ${JSON.stringify(ri)}`,
    );
    // Hold and resume: re-INVITEs through the anchor (the carrier answers them); the audio
    // comes back on the same ports.
    await page.getByRole('button', { name: 'Hold' }).click();
    await page.waitForSelector('#hold[aria-pressed="true"]', { timeout: T });
    await page.getByRole('button', { name: 'Hold' }).click();
    await page.waitForSelector('#hold[aria-pressed="false"]', { timeout: T });
    const resumed = await page.evaluate(() => window.softphoneAudio());
    await new Promise((r) => setTimeout(r, 1500));
    const later = await page.evaluate(() => window.softphoneAudio());
    expect(later.received - resumed.received >= 40, `audio after resume: ${JSON.stringify(resumed)} -> ${JSON.stringify(later)}`);
    await page.getByRole('button', { name: 'Mute' }).click();
    await page.waitForSelector('#mute[aria-pressed="true"]', { timeout: T });
    await page.screenshot({ path: join(OUT_DIR, 'normal-call.png'), fullPage: true });
    await page.getByRole('button', { name: 'Mute' }).click();
    await page.waitForSelector('#mute[aria-pressed="false"]', { timeout: T });
    await page.getByRole('button', { name: 'Hang up' }).click();
    await callState(page, 'idle');
    save('ordinary-invite.sip', sentInvite(a.sip, CALL_NUMBER.replace(/[^+0-9]/g, '')));

    step('emergency call with location');
    await page.getByLabel('Number to dial').fill(EMERGENCY);
    await page.getByRole('button', { name: 'Call' }).click();
    await page.waitForSelector('main[data-mode="emergency"]', { timeout: T });
    await callState(page, 'active');
    const alert = page.getByRole('alert').filter({ hasText: 'Emergency call in progress' });
    expect(await alert.isVisible(), 'the emergency alert is shown');
    expect(await page.getByRole('button', { name: 'End call' }).isVisible(), 'End call is shown');
    expect(await page.locator('#devices').isVisible(), 'device settings are shown');
    expect(await page.getByLabel('Microphone').isVisible(), 'the microphone choice is shown');
    for (const hidden of ['#dialer', '#login', '#logout', '#mute', '#hold', '#call-button']) {
      expect(!(await page.locator(hidden).isVisible()), `${hidden} is hidden in emergency mode`);
    }
    expect(!(await page.locator('#location-warning').isVisible()), 'no location warning with a location');
    await presenceBecomes('dnd');
    // The page learns it over SIP (NOTIFY) and shows it, read-only, beside the alert.
    await page.waitForFunction(
      () => document.getElementById('presence').textContent.includes('Do Not Disturb'),
      null,
      { timeout: T },
    );
    expect(await page.locator('#presence').isVisible(), 'presence is shown in emergency mode');
    expect(!(await page.locator('#presence-select').isVisible()), 'presence is not choosable in emergency mode');
    await audioFlows(page, 'emergency call');
    await page.screenshot({ path: join(OUT_DIR, 'emergency-call.png'), fullPage: true });
    await page.getByRole('button', { name: 'End call' }).click();
    await callState(page, 'idle');
    await page.waitForSelector('main[data-mode="normal"]', { timeout: T });
    expect(await page.locator('#dialer').isVisible(), 'the dialpad is back after the call');
    save('emergency-invite.sip', sentInvite(a.sip, EMERGENCY));
    await presenceBecomes('available');

    step('emergency call without location');
    const b = await openPage(browser, { geolocation: false });
    await login(b.page, AGENT2, PASSWORD2);
    await b.page.getByLabel('Number to dial').fill(EMERGENCY);
    await b.page.getByRole('button', { name: 'Call' }).click();
    await b.page.waitForSelector('main[data-mode="emergency"]', { timeout: T });
    const warning = b.page.locator('#location-warning');
    await warning.waitFor({ state: 'visible', timeout: T });
    expect((await warning.textContent()).includes('placed without it'), `warning: ${await warning.textContent()}`);
    await callState(b.page, 'active');
    await b.page.screenshot({ path: join(OUT_DIR, 'emergency-no-location.png'), fullPage: true });
    await b.page.getByRole('button', { name: 'End call' }).click();
    await callState(b.page, 'idle');
    save('emergency-no-location-invite.sip', sentInvite(b.sip, EMERGENCY));

    step('location outside the supported countries');
    // London: the page says so (it would warn in an emergency call, and still place it).
    const c = await openPage(browser, { geolocation: true, at: { latitude: 51.5072, longitude: -0.1276, accuracy: 20 } });
    await login(c.page, AGENT2, PASSWORD2);
    await c.page.waitForFunction(() => window.softphone.location === 'outside', null, { timeout: T });
    const where = await c.page.textContent('#location-state');
    expect(where.includes('outside the supported countries'), `location state: ${where}`);
    expect((await page.evaluate(() => window.softphone.country)) === 'US', 'Chicago is in the US');
    await c.context.close();

    step('browser to browser');
    // Two browsers talk peer to peer: the edge relays signalling only, and audio flows.
    await page.getByLabel('Number to dial').fill(AGENT2);
    await page.getByRole('button', { name: 'Call' }).click();
    const ringing = b.page.locator('#incoming');
    await ringing.waitFor({ state: 'visible', timeout: T });
    await b.page.getByRole('button', { name: 'Answer' }).click();
    await callState(page, 'active');
    await callState(b.page, 'active');
    await audioFlows(page, 'browser-to-browser call (caller)');
    await audioFlows(b.page, 'browser-to-browser call (callee)');
    await page.getByRole('button', { name: 'Hang up' }).click();
    await callState(page, 'idle');
    await callState(b.page, 'idle');
    save('browser-to-browser-invite.sip', sentInvite(a.sip, AGENT2));
    const got = b.sip.filter((m) => m.dir === 'received' && m.text.startsWith('INVITE '));
    expect(got.length > 0, 'the second page received no INVITE');
    save('browser-to-browser-received.sip', got[got.length - 1].text);
    expect(b.errors.length === 0, `page errors: ${b.errors.join('; ')}`);
    await b.context.close();

    step('PSAP callback');
    const psapFrom = a.sip.length;
    console.log('psap: ready');
    const banner = page.locator('#incoming.psap');
    await banner.waitFor({ state: 'visible', timeout: 2 * T });
    expect((await page.textContent('#incoming-title')) === 'Emergency services calling back', 'PSAP banner title');
    await page.screenshot({ path: join(OUT_DIR, 'psap-callback.png'), fullPage: true });
    await page.getByRole('button', { name: 'Answer' }).click();
    await callState(page, 'active');
    await audioFlows(page, 'PSAP callback', 25);
    if (PSAP_HOLDS) {
      // The PSAP holds and resumes (re-INVITEs with plain SDP): the page gets WebRTC
      // re-offers of the same session from the edge, answers them, and audio flows again
      // after the resume.
      const reoffers = await reInvites(a.sip, psapFrom, 2);
      expect(reoffers.every((m) => m.includes('a=ice-lite') && m.includes('a=setup:actpass')), 'WebRTC re-offers');
      expect(reoffers[0].includes('a=sendonly') && reoffers[1].includes('a=sendrecv'), 'hold, then resume');
      const psapResumed = await page.evaluate(() => window.softphoneAudio());
      await audioFlows(page, 'PSAP callback after the resume', psapResumed.received + 50);
      save('psap-reoffers.sip', reoffers.join('\n'));
    }
    // The PSAP hangs up.
    await callState(page, 'idle');

    step('logout');
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForSelector('#login:not([hidden])', { timeout: T });
    save('sip.log', a.sip.map((m) => `--- ${m.dir}\n${m.text}`).join('\n'));
    expect(a.errors.length === 0, `page errors: ${a.errors.join('; ')}`);
    await a.context.close();
    step('done');
  } catch (e) {
    await report();
    throw e;
  } finally {
    await browser.close();
  }
}

/** What each open page showed and said when a step failed: status line, page state,
 * console errors, the SIP it exchanged, and a screenshot. */
async function report() {
  for (const [i, { page, sip, errors }] of open.entries()) {
    try {
      if (page.isClosed()) continue;
      const status = await page.textContent('#status');
      const state = await page.evaluate(() => JSON.stringify(window.softphone));
      console.error(`page ${i}: status "${status}", state ${state}`);
      for (const e of errors) console.error(`page ${i}: ${e}`);
      save(`failure-${i}-sip.log`, sip.map((m) => `--- ${m.dir}\n${m.text}`).join('\n'));
      await page.screenshot({ path: join(OUT_DIR, `failure-${i}.png`), fullPage: true });
    } catch (e) {
      console.error(`page ${i}: no report: ${e.message}`);
    }
  }
}

main().catch((e) => {
  console.error(e && e.stack ? e.stack : String(e));
  process.exit(1);
});
