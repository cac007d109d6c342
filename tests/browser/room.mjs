// Drives headless Chromium (Debian's /usr/bin/chromium, through playwright-core)
// against ringbridge's room page, and prints one JSON line with what it saw.
// tests/tests/browser_page.rs runs it and asserts on the result.
//
// Usage: node room.mjs CONFIG.json
// CONFIG: {scenario: "room" | "member", base: "http://127.0.0.1:PORT/",
//          room, tokens: [owner tokens], memberToken?, outDir, chromium?,
//          bases? (one base per page), insecure? (accept a self-signed certificate)}
//
// "room": every token opens `${base}${room}#jwt=TOKEN` and joins; each page must
// show one remote tile per other page, whose video decodes (framesDecoded
// rising) and whose screenshot is not blank; then page 0 stops its camera and
// the others must show it muted.
// "member": an owner page, a member page (a token without screen sharing) and,
// with otherMemberToken, another member join; the member tries to share its
// screen and must see the refusal; the owner mutes the other member (whose
// page must say so), removes the member (whose page must say so), then leaves
// (the other member must be told the conference is ending).

import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';
import { decodePng, lumaStats } from './png.mjs';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const result = { scenario: cfg.scenario, ok: false, pages: [], errors: [] };
const log = (m) => process.stderr.write(`[browser] ${m}\n`);

// DESIGN.md "Headless Chromium" (playwright adds --headless and its own
// --user-data-dir).
const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--autoplay-policy=no-user-gesture-required',
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs, stepMs = 100) {
  const end = Date.now() + timeoutMs;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

/** Per remote tile: endpoint, name, mid, framesDecoded of its receiver, muted flag. */
function tilesInPage() {
  const ui = window.ringbridge;
  return Promise.all([...document.querySelectorAll('#tiles .tile.remote:not(.screen)')].map(async (el) => {
    const mid = el.dataset.mid;
    let framesDecoded = 0;
    let width = 0;
    if (ui.call && mid) {
      const r = ui.call.receiverFor(mid);
      if (r) {
        for (const s of (await r.getStats()).values()) {
          if (s.type === 'inbound-rtp') {
            framesDecoded = s.framesDecoded || 0;
            width = s.frameWidth || 0;
          }
        }
      }
    }
    return {
      endpoint: el.dataset.endpoint,
      name: el.querySelector('.name').textContent,
      mid,
      framesDecoded,
      width,
      videoMuted: el.dataset.videoMuted === 'true',
      conn: el.querySelector('.conn-text').textContent,
    };
  }));
}

async function openPage(browser, token, label, base = cfg.base) {
  // `insecure`: the nginx test's self-signed certificate.
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, ignoreHTTPSErrors: !!cfg.insecure });
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  const url = `${base}${encodeURIComponent(cfg.room)}#jwt=${token}`;
  const opened = Date.now();
  await page.goto(url);
  await page.click('#join-button');
  await page.waitForSelector('#call:not([hidden])', { timeout: 30000 });
  const self = await page.getAttribute('#self-tile', 'data-endpoint');
  log(`${label} joined as ${self}`);
  return { label, context, page, opened, self, consoleLines };
}

async function firstFrame(p) {
  await until(`${p.label}: a decoded remote frame`, async () =>
    (await p.page.evaluate(tilesInPage)).some((t) => t.framesDecoded > 0), 60000, 50);
  return Date.now() - p.opened;
}

/** The page's own marks (ms since navigation): join clicked, answer, connected. */
function marks(p) {
  return p.page.evaluate(() => Object.fromEntries(performance.getEntriesByType('mark')
    .map((m) => [m.name.replace('ringbridge-', ''), Math.round(m.startTime)])));
}

async function roomScenario(browser) {
  const pages = [];
  // `bases`: one base URL per page (e.g. through a proxy at the root and under
  // a path prefix); else `base` for all.
  for (const [i, token] of cfg.tokens.entries()) {
    pages.push(await openPage(browser, token, `page${i}`, (cfg.bases && cfg.bases[i]) || cfg.base));
  }
  const others = pages.length - 1;
  // Time from opening the link to the first decoded remote frame, per page.
  const firstMs = await Promise.all(pages.map(firstFrame));
  for (const [i, p] of pages.entries()) {
    await until(`${p.label}: ${others} remote tiles decoding`, async () => {
      const tiles = await p.page.evaluate(tilesInPage);
      return tiles.length === others && tiles.every((t) => t.framesDecoded > 0);
    }, 60000);
    const before = await p.page.evaluate(tilesInPage);
    await sleep(1500);
    const after = await p.page.evaluate(tilesInPage);
    // Let the connection indicators fill in (they refresh every second).
    const shots = [];
    for (const t of after) {
      const png = await p.page.locator(`#tiles .tile.remote[data-endpoint="${t.endpoint}"]:not(.screen) video`).screenshot();
      shots.push({ endpoint: t.endpoint, ...lumaStats(decodePng(png)) });
    }
    const file = join(cfg.outDir, `room-${p.label}.png`);
    await p.page.screenshot({ path: file });
    result.pages.push({
      label: p.label,
      self: p.self,
      firstFrameMs: firstMs[i],
      marks: await marks(p),
      tilesBefore: before,
      tiles: after,
      tileShots: shots,
      screenshot: file,
    });
  }
  // Page 0 stops its camera; the others must show it within 2 s. Both ends are
  // timed inside the pages (Date.now() on one machine), so the driver's own
  // polling does not count.
  const muter = pages[0];
  const watchers = pages.slice(1);
  await Promise.all(watchers.map((p) => p.page.evaluate((id) => {
    window.__mutedAt = null;
    const tile = document.querySelector(`#tiles .tile.remote[data-endpoint="${id}"]:not(.screen)`);
    new MutationObserver(() => {
      if (tile.dataset.videoMuted === 'true' && window.__mutedAt === null) window.__mutedAt = Date.now();
    }).observe(tile, { attributes: true, attributeFilter: ['data-video-muted'] });
  }, muter.self)));
  const clicked = await muter.page.evaluate(() => {
    const t = Date.now();
    document.getElementById('cam-button').click();
    return t;
  });
  const seen = await Promise.all(watchers.map(async (p) => {
    const at = await until(`${p.label}: the camera shown stopped`,
      () => p.page.evaluate(() => window.__mutedAt), 10000).catch(() => null);
    return at === null ? null : at - clicked;
  }));
  result.mute = { endpoint: muter.self, shownAfterMs: seen };
  // Page 1 shares its screen (owners may): the others show a screen tile
  // that decodes.
  const sharer = pages[1];
  await sharer.page.click('#share-button');
  result.share = { endpoint: sharer.self, pressed: await sharer.page.getAttribute('#share-button', 'aria-pressed') };
  result.share.seen = await Promise.all(pages.filter((p) => p !== sharer).map(async (p) => {
    const sel = `#tiles .tile.screen[data-endpoint="${sharer.self}"]`;
    try {
      await p.page.waitForSelector(`${sel}:not([hidden])`, { timeout: 20000 });
      const frames = await until(`${p.label}: screen frames`, () => p.page.evaluate((id) => {
        const t = window.ringbridge.tiles.get(id);
        const r = t && t.screenMid && window.ringbridge.call.receiverFor(t.screenMid);
        if (!r) return null;
        return r.getStats().then((st) => {
          for (const x of st.values()) if (x.type === 'inbound-rtp' && x.framesDecoded > 0) return x.framesDecoded;
          return null;
        });
      }, sharer.self), 15000).catch(() => 0);
      return { label: p.label, framesDecoded: frames };
    } catch (e) {
      return { label: p.label, framesDecoded: 0, error: String(e) };
    }
  }));
  await pages[0].page.screenshot({ path: join(cfg.outDir, 'room-sharing-page0.png') });
  const file = join(cfg.outDir, 'room-muted-page1.png');
  await pages[1].page.screenshot({ path: file });
  result.mute.screenshot = file;
  for (const p of pages) result.pages.find((x) => x.label === p.label).console = p.consoleLines.slice(-20);
}

async function memberScenario(browser) {
  const owner = await openPage(browser, cfg.tokens[0], 'owner');
  const member = await openPage(browser, cfg.memberToken, 'member');
  const other = cfg.otherMemberToken ? await openPage(browser, cfg.otherMemberToken, 'other') : null;
  await firstFrame(member);
  // A member without screen sharing tries to share.
  await member.page.click('#share-button');
  const refusal = await member.page.waitForSelector('.notice[data-code="refused"]', { timeout: 20000 })
    .then((h) => h.textContent()).catch(() => null);
  result.refusal = refusal;
  await member.page.screenshot({ path: join(cfg.outDir, 'member-refused.png') });
  const tileOf = (p) => `#tiles .tile.remote[data-endpoint="${p.self}"]:not(.screen)`;
  await owner.page.waitForSelector(tileOf(member), { timeout: 20000 });
  result.ownerSeesModeration = await owner.page.isVisible(`${tileOf(member)} .mod-remove`);
  result.memberSeesModeration = await member.page.isVisible('#tiles .tile.remote .mod-remove');
  if (other) {
    // The owner mutes the other member: its page says so, and tells everyone.
    await owner.page.waitForSelector(tileOf(other), { timeout: 20000 });
    await owner.page.click(`${tileOf(other)} .mod-mute`);
    result.mutedNotice = await other.page.waitForSelector('.notice.info >> text=moderator muted', { timeout: 20000 })
      .then((h) => h.textContent()).catch(() => null);
    result.ownerSeesOtherMuted = await owner.page.waitForSelector(`${tileOf(other)}[data-video-muted="true"][data-audio-muted="true"]`, { timeout: 5000 })
      .then(() => true).catch(() => false);
  }
  // The owner removes the member.
  await owner.page.click(`${tileOf(member)} .mod-remove`);
  result.removedText = await member.page.waitForSelector('body[data-ended="true"] #ended-text', { timeout: 20000 })
    .then((h) => h.textContent()).catch(() => null);
  await member.page.screenshot({ path: join(cfg.outDir, 'member-removed.png') });
  result.ownerTilesAfterRemoval = await until('the member tile to go', async () => {
    const tiles = await owner.page.evaluate(tilesInPage);
    return tiles.some((t) => t.endpoint === member.self) ? null : { remoteTiles: tiles.length };
  }, 10000).catch(() => null);
  if (other) {
    // The owner leaves: the last owner gone, the other member is told the end is near.
    await owner.page.click('#leave-button');
    result.ownerLeftText = await owner.page.waitForSelector('body[data-ended="true"] #ended-text', { timeout: 20000 })
      .then((h) => h.textContent()).catch(() => null);
    result.endingNotice = await other.page.waitForSelector('.notice.warn >> text=last moderator left', { timeout: 20000 })
      .then((h) => h.textContent()).catch(() => null);
    result.otherTilesAfterLeave = await until('the owner tile to go', async () => {
      const n = (await other.page.evaluate(tilesInPage)).length;
      return n === 0 ? { remoteTiles: n } : null;
    }, 10000).catch(() => null);
    await other.page.screenshot({ path: join(cfg.outDir, 'other-ending.png') });
  }
  for (const p of [owner, member, other].filter(Boolean)) {
    result.pages.push({ label: p.label, self: p.self, console: p.consoleLines.slice(-20) });
  }
}

let browser;
try {
  mkdirSync(cfg.outDir, { recursive: true });
  browser = await chromium.launch({
    executablePath: cfg.chromium || '/usr/bin/chromium',
    headless: true,
    args: FLAGS,
  });
  if (cfg.scenario === 'room') await roomScenario(browser);
  else if (cfg.scenario === 'member') await memberScenario(browser);
  else throw new Error(`unknown scenario ${cfg.scenario}`);
  result.ok = true;
} catch (e) {
  result.errors.push(String(e && e.stack ? e.stack : e));
} finally {
  if (browser) await browser.close().catch(() => {});
}
const line = JSON.stringify(result);
if (cfg.outDir) writeFileSync(join(cfg.outDir, `${cfg.scenario}-result.json`), line);
process.stdout.write(`${line}\n`);
