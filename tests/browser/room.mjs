// Drives headless Chromium (Debian's /usr/bin/chromium, through playwright-core)
// against ringbridge's room page, and prints one JSON line with what it saw.
// tests/tests/browser_page.rs runs it and asserts on the result.
//
// Usage: node room.mjs CONFIG.json
// CONFIG: {scenario: "room" | "member" | "speaker", base: "http://127.0.0.1:PORT/",
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
// "speaker": three pages join and mute with the page's button; one page that
// is not the dominant speaker yet unmutes and talks (a WebAudio voice on its
// microphone sender): the others must highlight its tile as the bridge's
// dominant speaker; then it mutes and another page talks, and the highlight
// must move there.

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

/**
 * Gives page `p` a voice: its microphone sender gets a WebAudio track (through
 * the page's own device switch) of a 440 Hz tone whose loudness swings at 1.5 Hz
 * between about -45 and -8 dBov, as speech does over a room's noise floor. (The
 * fake microphone beeps 20 ms every 500 ms over digital silence: no speech to a
 * dominant speaker detector.) The page must be muted; it is unmuted with the
 * voice. Returns when it started, by the page's clock.
 */
function speak(p) {
  return p.page.evaluate(async () => {
    const ctx = new AudioContext();
    await ctx.resume();
    const tone = ctx.createOscillator();
    tone.frequency.value = 440;
    const gain = ctx.createGain();
    gain.gain.value = 0.26;
    const lfo = ctx.createOscillator();
    lfo.frequency.value = 1.5;
    // Negative: the loudness falls first, so the quiet trough (the speaker's
    // noise floor, as a detector learns it) comes 170 ms in, not 500.
    const depth = ctx.createGain();
    depth.gain.value = -0.25;
    lfo.connect(depth).connect(gain.gain);
    const out = ctx.createMediaStreamDestination();
    tone.connect(gain).connect(out);
    tone.start();
    lfo.start();
    window.__voice = ctx;
    // The page is muted: the voice replaces its microphone disabled, and the
    // page's button unmutes it.
    await window.ringbridge.call.replaceTrack('audio', out.stream.getAudioTracks()[0]);
    document.getElementById('mic-button').click();
    return Date.now();
  });
}

/** Records, in the page, when each tile (remote by endpoint, or "self") first
 * gets the dominant speaker's highlight after this call. */
function watchHighlights(p) {
  return p.page.evaluate(() => {
    window.__speakingAt = {};
    const note = () => {
      for (const el of document.querySelectorAll('.tile.speaking')) {
        const key = el.id === 'self-tile' ? 'self' : el.dataset.endpoint;
        if (key && !(key in window.__speakingAt)) window.__speakingAt[key] = Date.now();
      }
    };
    note();
    new MutationObserver(note).observe(document.getElementById('call'), {
      subtree: true, attributes: true, attributeFilter: ['class'],
    });
  });
}

/** The highlighted tiles of page `p` now: endpoints ("self" for its own). */
function highlighted(p) {
  return p.page.evaluate(() => [...document.querySelectorAll('.tile.speaking')]
    .map((el) => (el.id === 'self-tile' ? 'self' : el.dataset.endpoint)));
}

/** The endpoint page `p` shows as dominant speaker now (its own id for its
 * own tile), or null. */
async function dominantOn(p) {
  const h = await highlighted(p);
  return h.length ? (h[0] === 'self' ? p.self : h[0]) : null;
}

/** Sets page `p`'s microphone button to `muted`. */
async function setMuted(p, muted) {
  if ((await p.page.getAttribute('#mic-button', 'aria-pressed')) !== String(muted)) {
    await p.page.click('#mic-button');
  }
}

/** Everyone mutes (the page's button: the track is disabled, so Chrome sends
 * silence, level 127), which keeps the current dominant speaker; then a page
 * that is neither that speaker nor in `exclude` talks. Reports how long until
 * each other page highlights its tile (ms, by the pages' clock; null if never). */
async function speakerTurn(pages, exclude) {
  for (const p of pages) await setMuted(p, true);
  // Let a change already under way (the fake microphones' beeps can make
  // someone dominant) reach the pages.
  await sleep(1500);
  const current = await dominantOn(pages[0]);
  const speaker = pages.find((p) => p.self !== current && !exclude.includes(p));
  const others = pages.filter((p) => p !== speaker);
  const before = await Promise.all(others.map(dominantOn));
  await Promise.all(pages.map(watchHighlights));
  const started = await speak(speaker);
  const shownAfterMs = await Promise.all(others.map(async (p) => {
    const at = await until(`${p.label}: ${speaker.label}'s tile highlighted`,
      () => p.page.evaluate((id) => window.__speakingAt[id] || null, speaker.self), 15000)
      .catch(() => null);
    return at === null ? null : Math.max(0, at - started);
  }));
  const selfAt = await until(`${speaker.label}: its own tile highlighted`,
    () => speaker.page.evaluate(() => window.__speakingAt.self || null), 5000).catch(() => null);
  const outline = await others[0].page.evaluate((id) => {
    const el = document.querySelector(`#tiles .tile.remote[data-endpoint="${id}"]:not(.screen)`);
    return el ? getComputedStyle(el).outlineColor : null;
  }, speaker.self);
  return {
    speaker,
    report: {
      endpoint: speaker.self,
      before,
      muted: await Promise.all(pages.map((p) => p.page.getAttribute('#mic-button', 'aria-pressed'))),
      shownAfterMs,
      selfShown: selfAt !== null,
      outline,
      highlighted: await Promise.all(others.map(highlighted)),
    },
  };
}

async function speakerScenario(browser) {
  const pages = [];
  for (const [i, token] of cfg.tokens.entries()) {
    pages.push(await openPage(browser, token, `page${i}`));
  }
  const others = pages.length - 1;
  for (const p of pages) {
    await until(`${p.label}: ${others} remote tiles`, async () =>
      (await p.page.evaluate(tilesInPage)).length === others, 60000);
  }
  const first = await speakerTurn(pages, []);
  result.first = first.report;
  await pages[2].page.screenshot({ path: join(cfg.outDir, 'speaker-first.png') });
  const second = await speakerTurn(pages, [first.speaker]);
  result.second = second.report;
  result.screenshot = join(cfg.outDir, 'speaker-second.png');
  const watcher = pages.find((p) => p !== first.speaker && p !== second.speaker);
  await watcher.page.screenshot({ path: result.screenshot });
  for (const p of pages) {
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
  else if (cfg.scenario === 'speaker') await speakerScenario(browser);
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
