// One participant's connection to the bridge: the peer connection, the join
// (POST of the offer), the colibri websocket, mutes, screen sharing, leaving,
// and the moderator actions. No DOM here: app.js draws what `events` report.
//
// Publishing: microphone and camera with addTrack-style sendrecv m-lines (each
// also receives one remote source), plus one sendonly video m-line for the
// screen (marked `a=content:slides` in the offer sent to the bridge, so the
// bridge knows it is a screen), idle until sharing starts: the bridge does not
// renegotiate, so every m-line exists from the start.
// Receiving: the sendrecv m-lines plus EXTRA_AUDIO_SLOTS and EXTRA_VIDEO_SLOTS
// recvonly m-lines; the bridge maps remote sources onto these slots and says
// which on the colibri websocket (VideoSourcesMap / AudioSourcesMap, by mid).
//
// Mute state travels as an EndpointMessage `{type: "ringbridge-state",
// audioMuted, videoMuted, screen}` broadcast on every change, and answered to
// `{type: "ringbridge-hello"}` (sent by every page when its socket opens), so
// a page that joins later learns it too.

import { Colibri, colibriUrl } from './colibri.js';

/** Receive slots beyond the sendrecv microphone m-line. */
export const EXTRA_AUDIO_SLOTS = 5;
/** Receive slots beyond the sendrecv camera m-line (cameras and screens). */
export const EXTRA_VIDEO_SLOTS = 9;

const STATE = 'ringbridge-state';
const HELLO = 'ringbridge-hello';

function keepCodecs(transceiver, kind, wanted) {
  if (!RTCRtpReceiver.getCapabilities || !transceiver.setCodecPreferences) return;
  const caps = RTCRtpReceiver.getCapabilities(kind);
  if (!caps) return;
  const codecs = caps.codecs.filter((c) => wanted.includes(c.mimeType.toLowerCase()));
  if (codecs.length) {
    try {
      transceiver.setCodecPreferences(codecs);
    } catch {
      // Keep the browser's defaults.
    }
  }
}

/** Adds `a=content:slides` to the m-section with `mid` (after its a=mid line). */
export function markScreen(sdp, mid) {
  const out = [];
  for (const line of sdp.split('\r\n')) {
    out.push(line);
    if (line === `a=mid:${mid}`) out.push('a=content:slides');
  }
  return out.join('\r\n');
}

/** A relative URL resolved against the page. */
function rel(path) {
  return new URL(path, document.baseURI).href;
}

export class Call {
  /**
   * `room` as typed (path segment decoded), `token` the JWT, `media` a
   * MediaStream with one audio and one video track, `events` callbacks:
   * sources(video, audio), state(endpoint, state), notice(kind, msg),
   * ended(reason), connection(state), speaker(endpoint), self(endpointId).
   */
  constructor(room, token, media, events) {
    this.room = room;
    this.token = token;
    this.media = media;
    this.events = events;
    this.endpoint = null;
    this.colibri = null;
    this.pc = null;
    this.state = { audioMuted: false, videoMuted: false, screen: false };
    this.screenTrack = null;
    this.screenRefusal = null;
    this.closed = false;
    this.videoMap = [];
    this.audioMap = [];
    this.known = new Set();
  }

  endpointsUrl() {
    return rel(`conferences/${encodeURIComponent(this.room)}/endpoints`);
  }

  endpointUrl(id) {
    return `${this.endpointsUrl()}/${encodeURIComponent(id)}`;
  }

  auth(extra) {
    return { Authorization: `Bearer ${this.token}`, ...(extra || {}) };
  }

  async join() {
    performance.mark('ringbridge-join');
    const pc = new RTCPeerConnection({ bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    pc.addEventListener('connectionstatechange', () => {
      if (pc.connectionState === 'connected') performance.mark('ringbridge-connected');
      this.events.connection(pc.connectionState);
    });
    const audio = this.media.getAudioTracks()[0] || null;
    const video = this.media.getVideoTracks()[0] || null;
    // addTrack's shape: sendrecv, one stream for both.
    this.micSender = audio ? pc.addTrack(audio, this.media) : pc.addTransceiver('audio', { direction: 'sendrecv' }).sender;
    this.camSender = video ? pc.addTrack(video, this.media) : pc.addTransceiver('video', { direction: 'sendrecv' }).sender;
    this.screenTransceiver = pc.addTransceiver('video', { direction: 'sendonly' });
    for (let i = 0; i < EXTRA_AUDIO_SLOTS; i++) pc.addTransceiver('audio', { direction: 'recvonly' });
    for (let i = 0; i < EXTRA_VIDEO_SLOTS; i++) pc.addTransceiver('video', { direction: 'recvonly' });
    for (const t of pc.getTransceivers()) {
      const kind = t.receiver.track.kind;
      keepCodecs(t, kind, kind === 'audio' ? ['audio/opus'] : ['video/vp8', 'video/rtx']);
    }
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const sdp = markScreen(pc.localDescription.sdp, this.screenTransceiver.mid);
    const resp = await fetch(this.endpointsUrl(), {
      method: 'POST',
      headers: this.auth({ 'Content-Type': 'application/sdp' }),
      body: sdp,
      cache: 'no-store',
    });
    const body = await resp.text();
    performance.mark('ringbridge-answer');
    if (resp.status !== 201) {
      let why = body;
      try {
        const j = JSON.parse(body);
        why = `${j.message} (${j.error})`;
      } catch {
        // not JSON
      }
      pc.close();
      throw new Error(`The bridge refused to let you in: ${why}`);
    }
    const location = resp.headers.get('Location') || '';
    this.endpoint = decodeURIComponent(location.split('/').filter(Boolean).pop() || '');
    this.events.self(this.endpoint);
    const url = colibriUrl(resp.headers.get('Link'), document.baseURI);
    this.colibri = url ? new Colibri(url, (m) => this.onColibri(m), () => this.onColibriClosed()) : null;
    await pc.setRemoteDescription({ type: 'answer', sdp: body });
    if (this.colibri) {
      await this.colibri.open;
      this.colibri.send({ colibriClass: 'ClientHello' });
      this.colibri.endpointMessage('', { type: HELLO });
      this.broadcastState();
    }
  }

  /** The receiver whose m-line has `mid`. */
  receiverFor(mid) {
    const t = this.pc && this.pc.getTransceivers().find((x) => x.mid === String(mid));
    return t ? t.receiver : null;
  }

  onColibri(msg) {
    switch (msg.colibriClass) {
      case 'VideoSourcesMap':
      case 'AudioSourcesMap': {
        const list = Array.isArray(msg.mappedSources) ? msg.mappedSources : [];
        if (msg.colibriClass === 'VideoSourcesMap') this.videoMap = list;
        else this.audioMap = list;
        for (const s of list) {
          if (s.owner && !this.known.has(s.owner)) {
            this.known.add(s.owner);
            this.sendState(s.owner);
          }
        }
        this.events.sources(this.videoMap, this.audioMap);
        break;
      }
      case 'EndpointMessage': {
        const p = msg.msgPayload || {};
        if (p.type === STATE && msg.from) {
          this.events.state(msg.from, {
            audioMuted: !!p.audioMuted,
            videoMuted: !!p.videoMuted,
            screen: !!p.screen,
          });
        } else if (p.type === HELLO && msg.from) {
          this.sendState(msg.from);
        }
        break;
      }
      case 'EndpointConnectivityStatusChangeEvent':
        if (String(msg.active) === 'true' && msg.endpoint) this.sendState(msg.endpoint);
        break;
      case 'DominantSpeakerEndpointChangeEvent':
        this.events.speaker(msg.dominantSpeakerEndpoint || null);
        break;
      case 'ForwardingRefused':
        this.onRefused(msg);
        break;
      case 'EndpointMuted':
        if (typeof msg.audio === 'boolean') this.setAudioMuted(msg.audio);
        if (typeof msg.video === 'boolean') this.setVideoMuted(msg.video);
        this.events.notice('info', `A moderator ${
          [msg.audio !== undefined ? (msg.audio ? 'muted' : 'unmuted') + ' your microphone' : '',
            msg.video !== undefined ? (msg.video ? 'stopped' : 'allowed') + ' your camera' : '']
            .filter(Boolean).join(' and ')}.`);
        break;
      case 'ConferenceEnding':
        this.events.notice('warn', `The last moderator left. The meeting ends in ${
          Number(msg.inSeconds) || 0} seconds unless a moderator joins again.`);
        break;
      case 'TokenExpiring':
        this.events.notice('warn', `Your access to this meeting expires in ${
          Number(msg.inSeconds) || 0} seconds. Reopen the meeting with a fresh link to stay.`);
        break;
      case 'EndpointRemoved':
        this.removedReason = String(msg.reason || '');
        break;
      default:
        break;
    }
  }

  onRefused(msg) {
    const screenSource = this.endpoint ? `${this.endpoint}-v1` : '';
    const why = msg.reason === 'screen-sharing-not-granted' || msg.reason === 'one-video-source-only'
      ? 'your token does not include the screen-sharing feature'
      : `reason: ${msg.reason}`;
    const text = `The bridge refused to forward your screen: ${why} (${msg.reason}).`;
    if (msg.source === screenSource) {
      // Refused up front, at join: say so when sharing is tried.
      this.screenRefusal = text;
      if (this.state.screen) {
        this.events.notice('error', text, 'refused');
        this.stopShare();
      }
    } else {
      this.events.notice('error', `The bridge does not forward your source ${msg.source} (${msg.reason}).`, 'refused');
    }
  }

  onColibriClosed() {
    if (this.closed) return;
    const reason = this.removedReason;
    if (reason !== undefined) {
      const text = {
        kicked: 'A moderator removed you from the meeting.',
        'owner-left': 'The meeting ended: no moderator came back.',
        'token-expired': 'Your access to this meeting expired.',
      }[reason] || `You were removed from the meeting (${reason}).`;
      this.teardown();
      this.events.ended(text, 'removed');
    } else {
      this.events.notice('warn', 'The connection to the bridge was lost.');
    }
  }

  sendState(to) {
    if (this.colibri) this.colibri.endpointMessage(to, { type: STATE, ...this.state });
  }

  broadcastState() {
    this.sendState('');
  }

  setAudioMuted(muted) {
    this.state.audioMuted = muted;
    for (const t of this.media.getAudioTracks()) t.enabled = !muted;
    this.broadcastState();
    this.events.state(null, { ...this.state });
  }

  setVideoMuted(muted) {
    this.state.videoMuted = muted;
    for (const t of this.media.getVideoTracks()) t.enabled = !muted;
    this.broadcastState();
    this.events.state(null, { ...this.state });
  }

  /** Replaces the microphone or camera track (device picker). */
  async replaceTrack(kind, track) {
    const sender = kind === 'audio' ? this.micSender : this.camSender;
    const old = kind === 'audio' ? this.media.getAudioTracks()[0] : this.media.getVideoTracks()[0];
    track.enabled = !(kind === 'audio' ? this.state.audioMuted : this.state.videoMuted);
    await sender.replaceTrack(track);
    if (old) {
      this.media.removeTrack(old);
      old.stop();
    }
    this.media.addTrack(track);
  }

  /** Starts sharing the screen; throws with a message a person understands. */
  async share() {
    if (this.screenRefusal) {
      this.events.notice('error', this.screenRefusal, 'refused');
      return false;
    }
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const track = stream.getVideoTracks()[0];
    track.addEventListener('ended', () => this.stopShare());
    await this.screenTransceiver.sender.replaceTrack(track);
    this.screenTrack = track;
    this.state.screen = true;
    if (this.colibri) {
      this.colibri.send({ colibriClass: 'SourceVideoTypeMessage', sourceName: `${this.endpoint}-v1`, videoType: 'desktop' });
    }
    this.broadcastState();
    this.events.state(null, { ...this.state });
    return true;
  }

  async stopShare() {
    if (this.screenTrack) {
      this.screenTrack.stop();
      this.screenTrack = null;
      try {
        await this.screenTransceiver.sender.replaceTrack(null);
      } catch {
        // the connection is gone
      }
    }
    if (this.state.screen) {
      this.state.screen = false;
      this.broadcastState();
      this.events.state(null, { ...this.state });
    }
  }

  /** Owners: mute another endpoint's audio and video. */
  async moderatorMute(id) {
    const resp = await fetch(`${this.endpointUrl(id)}/mute`, {
      method: 'POST',
      headers: this.auth({ 'Content-Type': 'application/json' }),
      body: JSON.stringify({ audio: true, video: true }),
    });
    if (!resp.ok) throw new Error(await errorText(resp));
  }

  /** Owners: remove another endpoint. */
  async moderatorRemove(id) {
    const resp = await fetch(this.endpointUrl(id), { method: 'DELETE', headers: this.auth() });
    if (!resp.ok) throw new Error(await errorText(resp));
  }

  teardown() {
    this.closed = true;
    if (this.screenTrack) this.screenTrack.stop();
    if (this.colibri) this.colibri.close();
    if (this.pc) this.pc.close();
  }

  /** Leaves: DELETE of the own endpoint, then closes everything. */
  async leave() {
    const id = this.endpoint;
    this.teardown();
    if (id) {
      try {
        await fetch(this.endpointUrl(id), { method: 'DELETE', headers: this.auth(), keepalive: true });
      } catch {
        // The bridge expires the endpoint anyway once media stops.
      }
    }
  }
}

async function errorText(resp) {
  const text = await resp.text();
  try {
    const j = JSON.parse(text);
    return `${j.message} (${j.error})`;
  } catch {
    return `${resp.status} ${text}`;
  }
}
