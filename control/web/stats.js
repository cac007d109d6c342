// Connection figures for a tile, from RTCPeerConnection.getStats(): round-trip
// time, loss, bitrate and resolution of one receive slot.

/** Keeps the previous sample per receiver, to turn counters into rates. */
export class SlotStats {
  constructor() {
    this.prev = new Map();
  }

  /**
   * Figures for `receiver` (an RTCRtpReceiver):
   * `{rttMs, lossPct, kbps, width, height, framesDecoded, packetsReceived}`.
   */
  async sample(receiver) {
    const report = await receiver.getStats();
    let inbound = null;
    let rttMs = null;
    for (const s of report.values()) {
      if (s.type === 'inbound-rtp') inbound = s;
      if (s.type === 'candidate-pair' && s.nominated && s.currentRoundTripTime !== undefined) {
        rttMs = Math.round(s.currentRoundTripTime * 1000);
      }
    }
    if (!inbound) return null;
    const now = inbound.timestamp;
    const prev = this.prev.get(receiver);
    this.prev.set(receiver, { t: now, bytes: inbound.bytesReceived || 0, lost: inbound.packetsLost || 0, recv: inbound.packetsReceived || 0 });
    let kbps = 0;
    let lossPct = 0;
    if (prev && now > prev.t) {
      kbps = Math.round(((inbound.bytesReceived - prev.bytes) * 8) / (now - prev.t));
      const lost = Math.max(0, (inbound.packetsLost || 0) - prev.lost);
      const got = Math.max(0, (inbound.packetsReceived || 0) - prev.recv);
      lossPct = lost + got > 0 ? Math.round((1000 * lost) / (lost + got)) / 10 : 0;
    }
    return {
      rttMs,
      lossPct,
      kbps,
      width: inbound.frameWidth || 0,
      height: inbound.frameHeight || 0,
      framesDecoded: inbound.framesDecoded || 0,
      packetsReceived: inbound.packetsReceived || 0,
    };
  }
}

/** `good`, `fair` or `poor` for a sample. */
export function quality(s) {
  if (!s) return 'poor';
  if (s.lossPct > 10 || (s.rttMs !== null && s.rttMs > 400)) return 'poor';
  if (s.lossPct > 2 || (s.rttMs !== null && s.rttMs > 150)) return 'fair';
  return 'good';
}

/** One line for humans: `640×480 · 512 kb/s · 0% loss · 3 ms`. */
export function describe(s) {
  if (!s) return 'no media';
  const parts = [];
  if (s.width) parts.push(`${s.width}×${s.height}`);
  parts.push(`${s.kbps} kb/s`);
  parts.push(`${s.lossPct}% loss`);
  if (s.rttMs !== null) parts.push(`${s.rttMs} ms`);
  return parts.join(' · ');
}
