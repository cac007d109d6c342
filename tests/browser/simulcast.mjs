// Three headless Chromium pages that publish simulcast (rids q, h, f at a
// quarter, half and full size of a fake 1280x720 camera) and receive each
// other through the bridge; the third page asks for at most 180 lines with
// colibri `ReceiverVideoConstraints`. Samples `getStats()` of each page once a
// second and prints one JSON line (tests/tests/browser_simulcast.rs reads it).
//
// Usage: node simulcast.mjs CONFIG.json
// CONFIG: {signal: "http://127.0.0.1:PORT", room, tokens: [three tokens],
//          seconds, maxHeight (the third page's constraint, null for none),
//          chromium?, cap?, videoFile?}
// videoFile: a .y4m file Chromium's fake camera plays (looped) instead of its
// own drawing (`--use-file-for-fake-video-capture`).
// maxBitrates: the `maxBitrate` of encodings q, h and f, bit/s (default
// [200000, 700000, 2500000]).
// cap: {page, afterS, argvs}: at afterS seconds after connecting, runs each argv
// (e.g. `ip netns exec NS tc ...`) with every "{port}" replaced by the UDP port
// of page `page`'s selected ICE candidate, so the bridge's downlink to that
// page alone is capped; from then on that page's inbound video is also sampled
// every 100 ms (`fine`) to see freezes shorter than a second.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const result = { ok: false, pages: [], errors: [] };
const log = (m) => process.stderr.write(`[simulcast] ${m}\n`);

// DESIGN.md "Headless Chromium"; the bridge is on loopback here.
const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream', '--allow-loopback-in-peer-connection',
  '--disable-features=WebRtcHideLocalIpsWithMdns', '--autoplay-policy=no-user-gesture-required',
];

const PAGE = `<!doctype html><meta charset="utf-8"><title>simulcast</title>
<script>
window.rb = {
  async offer(maxBitrates) {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: true, video: { width: 1280, height: 720, frameRate: 30 } });
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    window.pc = pc;
    pc.addTrack(stream.getAudioTracks()[0], stream);
    // Simulcast as Jitsi Meet and most SFU apps send it; the m-line is
    // sendrecv, so it is also one video slot; one more slot for the second
    // remote camera.
    pc.addTransceiver(stream.getVideoTracks()[0], {
      direction: 'sendrecv', streams: [stream],
      sendEncodings: [
        { rid: 'q', scaleResolutionDownBy: 4, maxBitrate: maxBitrates[0] },
        { rid: 'h', scaleResolutionDownBy: 2, maxBitrate: maxBitrates[1] },
        { rid: 'f', scaleResolutionDownBy: 1, maxBitrate: maxBitrates[2] },
      ] });
    pc.addTransceiver('video', { direction: 'recvonly' });
    pc.addTransceiver('audio', { direction: 'recvonly' });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((r) => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 2000);
    });
    return pc.localDescription.sdp;
  },
  async answer(sdp, ws, maxHeight) {
    await pc.setRemoteDescription({ type: 'answer', sdp });
    const sock = new WebSocket(ws);
    window.sock = sock;
    // Which endpoint owns the video on each receive mid (VideoSourcesMap).
    window.owners = {};
    sock.onmessage = (m) => {
      try {
        const msg = JSON.parse(m.data);
        if (msg.colibriClass === 'VideoSourcesMap') {
          window.owners = {};
          for (const e of msg.mappedSources || []) window.owners[e.mid] = e.owner;
        }
        if (msg.colibriClass === 'ConnectionStats') window.estimate = msg.estimatedDownlinkBandwidth;
      } catch (e) { /* not JSON */ }
    };
    sock.onopen = () => {
      if (maxHeight !== null) sock.send(JSON.stringify({
        colibriClass: 'ReceiverVideoConstraints', lastN: -1,
        defaultConstraints: { maxHeight } }));
    };
  },
  state() { return pc.connectionState; },
  async localPort() {
    const stats = await pc.getStats();
    for (const t of stats.values()) {
      if (t.type !== 'transport' || !t.selectedCandidatePairId) continue;
      const pair = stats.get(t.selectedCandidatePairId);
      const local = pair && stats.get(pair.localCandidateId);
      if (local) return local.port;
    }
    return null;
  },
  async frames() {
    const s = {};
    for (const r of (await pc.getStats()).values()) {
      if (r.type === 'inbound-rtp' && r.kind === 'video') s[r.mid] = [
        r.framesDecoded || 0, r.frameHeight || 0, r.freezeCount || 0,
        r.totalFreezesDuration || 0];
    }
    return s;
  },
  async sample() {
    const s = { inbound: [], outbound: [] };
    for (const r of (await pc.getStats()).values()) {
      if (r.type === 'inbound-rtp' && r.kind === 'video') s.inbound.push({
        mid: r.mid, owner: (window.owners || {})[r.mid] || null,
        framesDecoded: r.framesDecoded || 0, bytesReceived: r.bytesReceived || 0,
        frameWidth: r.frameWidth || 0, frameHeight: r.frameHeight || 0 });
      if (r.type === 'outbound-rtp' && r.kind === 'video') s.outbound.push({
        rid: r.rid || '', frameHeight: r.frameHeight || 0, framesSent: r.framesSent || 0,
        bytesSent: r.bytesSent || 0,
        active: r.active !== false, qualityLimitationReason: r.qualityLimitationReason || '' });
    }
    s.inbound.sort((a, b) => String(a.mid).localeCompare(String(b.mid)));
    // Packets in: the transport's count against every inbound stream's (a
    // packet the browser could not match to a stream counts in the first only).
    s.packets = { transport: 0, streams: 0, lost: 0 };
    for (const r of (await pc.getStats()).values()) {
      if (r.type === 'transport') s.packets.transport += r.packetsReceived || 0;
      if (r.type === 'inbound-rtp') {
        s.packets.streams += r.packetsReceived || 0;
        s.packets.lost += r.packetsLost || 0;
      }
    }
    // The bridge's latest estimate toward this page (ConnectionStats), bit/s.
    s.estimate = window.estimate || null;
    s.outbound.sort((a, b) => a.rid.localeCompare(b.rid));
    return s;
  },
};
</script><body></body>`;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function until(what, fn, timeoutMs, stepMs = 100) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(stepMs);
  }
}

function colibriUrl(link) {
  const m = /<([^>]+)>\s*;\s*rel="?colibri-ws"?/i.exec(link || '');
  if (!m) throw new Error(`no colibri-ws Link in ${link}`);
  return new URL(m[1], cfg.signal.replace(/^http/, 'ws')).href;
}

async function join(browser, base, token, label, maxHeight) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(base);
  const offer = await page.evaluate((b) => window.rb.offer(b), cfg.maxBitrates || [200000, 700000, 2500000]);
  const resp = await fetch(`${cfg.signal}/conferences/${encodeURIComponent(cfg.room)}/endpoints`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: offer,
  });
  const answer = await resp.text();
  if (resp.status !== 201) throw new Error(`${label}: join answered ${resp.status}: ${answer}`);
  const ws = colibriUrl(resp.headers.get('Link'));
  await page.evaluate(([sdp, w, h]) => window.rb.answer(sdp, w, h), [answer, ws, maxHeight]);
  log(`${label} joined`);
  const endpoint = decodeURIComponent(new URL(ws).pathname.split('/').pop());
  return { label, endpoint, context, page, answer, consoleLines, samples: [] };
}

async function main() {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}/`;
  const args = cfg.videoFile ? [...FLAGS, `--use-file-for-fake-video-capture=${cfg.videoFile}`] : FLAGS;
  const browser = await chromium.launch({ executablePath: cfg.chromium || '/usr/bin/chromium', args });
  const pages = [];
  try {
    for (const [i, token] of cfg.tokens.entries()) {
      const maxHeight = i === cfg.tokens.length - 1 ? (cfg.maxHeight ?? null) : null;
      pages.push(await join(browser, base, token, `page${i}`, maxHeight));
    }
    await until('every peer connection connected', async () => {
      const states = await Promise.all(pages.map((p) => p.page.evaluate(() => window.rb.state())));
      return states.every((s) => s === 'connected');
    }, 30000, 50);
    const t0 = Date.now();
    log(`connected; sampling for ${cfg.seconds} s`);
    let capped = null;
    let fine = null;
    for (let k = 0; k <= cfg.seconds; k++) {
      await sleep(Math.max(0, t0 + k * 1000 - Date.now()));
      const t = (Date.now() - t0) / 1000;
      const ss = await Promise.all(pages.map((p) => p.page.evaluate(() => window.rb.sample())));
      ss.forEach((s, i) => pages[i].samples.push({ t, ...s }));
      if (cfg.cap && !capped && t >= cfg.cap.afterS) {
        const page = pages[cfg.cap.page];
        const port = await page.page.evaluate(() => window.rb.localPort());
        if (!port) throw new Error(`${page.label}: no selected candidate pair to cap`);
        for (const argv of cfg.cap.argvs) {
          const a = argv.map((x) => x.replaceAll('{port}', String(port)));
          execFileSync(a[0], a.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
        }
        capped = { t: (Date.now() - t0) / 1000, port };
        log(`${page.label}: downlink to port ${port} capped at ${capped.t} s`);
        fine = (async () => {
          const rows = [];
          while (Date.now() - t0 < cfg.seconds * 1000) {
            rows.push({ t: (Date.now() - t0) / 1000, ...(await page.page.evaluate(() => window.rb.frames())) });
            await sleep(100);
          }
          return rows;
        })();
      }
    }
    if (capped) result.cap = { ...capped, page: cfg.cap.page, fine: await fine };
    for (const p of pages) {
      result.pages.push({
        label: p.label,
        endpoint: p.endpoint,
        answerSimulcast: /a=simulcast:recv/.test(p.answer),
        samples: p.samples,
        console: p.consoleLines.slice(-20),
      });
    }
    result.ok = true;
  } catch (e) {
    result.errors.push(String(e && e.stack || e));
    for (const p of pages) result.errors.push(`${p.label} console: ${p.consoleLines.slice(-20).join(' | ')}`);
  } finally {
    await browser.close().catch(() => {});
    server.close();
  }
  process.stdout.write(`${JSON.stringify(result)}\n`);
}

main().catch((e) => {
  result.errors.push(String(e && e.stack || e));
  process.stdout.write(`${JSON.stringify(result)}\n`);
  process.exit(1);
});
