// Two headless Chromium pages that publish with `pc.addTrack()` (sendrecv
// m-lines, fake 1280x720 camera and fake microphone) and receive each other
// through the bridge, which runs behind a veth pair in a network namespace
// (tests/tests/browser_network.rs sets that up, and the loss). Samples
// `getStats()` of each page once a second and prints one JSON line.
//
// Usage: node network.mjs CONFIG.json
// CONFIG: {signal: "http://10.99.0.2:PORT", room, tokens: [two tokens],
//          seconds (the measured window), chromium?}
//
// The page is served by this script on 127.0.0.1 (a secure context, so
// getUserMedia works); the signalling POST goes from node, not from the page,
// so the bridge needs no CORS. The measured window starts when both peer
// connections are `connected`; samples carry `t` in seconds since then.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { chromium } from 'playwright-core';

const cfg = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const result = { ok: false, pages: [], errors: [] };
const log = (m) => process.stderr.write(`[network] ${m}\n`);

// DESIGN.md "Headless Chromium" (playwright adds --headless and its own
// --user-data-dir). No --allow-loopback-in-peer-connection: the bridge is
// reached over the veth pair, whose address is the host candidate.
const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--use-fake-device-for-media-stream',
  '--use-fake-ui-for-media-stream', '--disable-features=WebRtcHideLocalIpsWithMdns',
  '--autoplay-policy=no-user-gesture-required',
];

const PAGE = `<!doctype html><meta charset="utf-8"><title>netloss</title>
<script>
window.rb = {
  async offer() {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: true, video: { width: 1280, height: 720, frameRate: 30 } });
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle' });
    window.pc = pc;
    // addTrack: one sendrecv m-line per track, as most WebRTC apps publish.
    for (const t of stream.getTracks()) pc.addTrack(t, stream);
    window.remote = [];
    pc.ontrack = (e) => {
      window.remote.push(e.track.kind);
      const el = document.createElement(e.track.kind);
      el.autoplay = true; el.muted = true;
      el.srcObject = new MediaStream([e.track]);
      document.body.appendChild(el);
    };
    await pc.setLocalDescription(await pc.createOffer());
    // The bridge is ICE-lite: it needs no candidates from us, but wait a
    // little so the offer is complete when gathering is quick.
    await new Promise((r) => {
      if (pc.iceGatheringState === 'complete') return r();
      pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
      setTimeout(r, 2000);
    });
    return pc.localDescription.sdp;
  },
  async answer(sdp) {
    // How long the connection takes (the encoder drops and downscales the
    // frames it gets before the transport is up: see the Rust side).
    const t = performance.now();
    window.timing = {};
    pc.addEventListener('iceconnectionstatechange', () => {
      if (pc.iceConnectionState === 'connected') window.timing.iceMs ??= performance.now() - t;
    });
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') window.timing.connectedMs ??= performance.now() - t;
    });
    await pc.setRemoteDescription({ type: 'answer', sdp });
  },
  state() { return pc.connectionState; },
  async sample() {
    const s = { video: null, audio: null, out: null, outAudio: null, pair: null };
    let pairId = null;
    const all = [...(await pc.getStats()).values()];
    for (const r of all) if (r.type === 'transport' && r.selectedCandidatePairId) pairId = r.selectedCandidatePairId;
    for (const r of all) {
      if (r.type === 'inbound-rtp' && r.kind === 'video') s.video = {
        framesDecoded: r.framesDecoded || 0, framesReceived: r.framesReceived || 0,
        packetsReceived: r.packetsReceived || 0, packetsLost: r.packetsLost || 0,
        nackCount: r.nackCount || 0, pliCount: r.pliCount || 0,
        freezeCount: r.freezeCount || 0, totalFreezesDuration: r.totalFreezesDuration || 0,
        frameWidth: r.frameWidth || 0, frameHeight: r.frameHeight || 0,
        retransmittedPacketsReceived: r.retransmittedPacketsReceived || 0 };
      if (r.type === 'inbound-rtp' && r.kind === 'audio') s.audio = {
        packetsReceived: r.packetsReceived || 0, packetsLost: r.packetsLost || 0,
        totalSamplesReceived: r.totalSamplesReceived || 0,
        concealedSamples: r.concealedSamples || 0,
        silentConcealedSamples: r.silentConcealedSamples || 0,
        fecPacketsReceived: r.fecPacketsReceived || 0 };
      if (r.type === 'outbound-rtp' && r.kind === 'video') s.out = {
        framesSent: r.framesSent || 0, packetsSent: r.packetsSent || 0,
        frameWidth: r.frameWidth || 0, frameHeight: r.frameHeight || 0,
        nackCount: r.nackCount || 0, pliCount: r.pliCount || 0,
        retransmittedPacketsSent: r.retransmittedPacketsSent || 0,
        targetBitrate: r.targetBitrate || 0,
        qualityLimitationReason: r.qualityLimitationReason || '' };
      if (r.type === 'outbound-rtp' && r.kind === 'audio') s.outAudio = {
        packetsSent: r.packetsSent || 0 };
      if (r.type === 'candidate-pair' && r.id === pairId) {
        const local = all.find((c) => c.id === r.localCandidateId);
        const remote = all.find((c) => c.id === r.remoteCandidateId);
        s.pair = { availableOutgoingBitrate: r.availableOutgoingBitrate || 0,
          currentRoundTripTime: r.currentRoundTripTime || 0,
          local: local ? local.address + ':' + local.port : '',
          remote: remote ? remote.address + ':' + remote.port : '',
          protocol: local ? local.protocol : '',
          remoteProtocol: remote ? remote.protocol : '',
          remoteTcpType: remote ? (remote.tcpType || '') : '' };
      }
    }
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

async function join(browser, base, token, label) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const consoleLines = [];
  page.on('console', (m) => consoleLines.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
  await page.goto(base);
  const offer = await page.evaluate(() => window.rb.offer());
  const resp = await fetch(`${cfg.signal}/conferences/${encodeURIComponent(cfg.room)}/endpoints`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/sdp', Authorization: `Bearer ${token}` },
    body: offer,
  });
  const answer = await resp.text();
  if (resp.status !== 201) throw new Error(`${label}: join answered ${resp.status}: ${answer}`);
  await page.evaluate((sdp) => window.rb.answer(sdp), answer);
  const sendrecv = (offer.match(/^a=sendrecv/gm) || []).length;
  log(`${label} joined (${sendrecv} sendrecv m-lines in the offer)`);
  return { label, context, page, offer, answer, consoleLines, samples: [] };
}

async function main() {
  const server = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' });
    res.end(PAGE);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${server.address().port}/`;
  const browser = await chromium.launch({ executablePath: cfg.chromium || '/usr/bin/chromium', args: FLAGS });
  const pages = [];
  try {
    for (const [i, token] of cfg.tokens.entries()) pages.push(await join(browser, base, token, `page${i}`));
    await until('both peer connections connected', async () => {
      const states = await Promise.all(pages.map((p) => p.page.evaluate(() => window.rb.state())));
      return states.every((s) => s === 'connected');
    }, 30000, 50);
    const t0 = Date.now();
    log(`connected; sampling for ${cfg.seconds} s`);
    for (let k = 0; k <= cfg.seconds; k++) {
      await sleep(Math.max(0, t0 + k * 1000 - Date.now()));
      const t = (Date.now() - t0) / 1000;
      const ss = await Promise.all(pages.map((p) => p.page.evaluate(() => window.rb.sample())));
      ss.forEach((s, i) => pages[i].samples.push({ t, ...s }));
    }
    for (const p of pages) {
      result.pages.push({
        label: p.label,
        sendrecvInOffer: (p.offer.match(/^a=sendrecv/gm) || []).length,
        sendrecvInAnswer: (p.answer.match(/^a=sendrecv/gm) || []).length,
        remoteTracks: await p.page.evaluate(() => window.remote),
        timing: await p.page.evaluate(() => window.timing),
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
