// The room page: lobby (token, devices, self view), the call (tiles, controls,
// moderator actions, messages), and the end screen. See call.js for the
// protocol side.

import { Call } from './call.js';
import { describeToken, tokenFromFragment } from './token.js';
import { SlotStats, describe, quality } from './stats.js';

const $ = (id) => document.getElementById(id);

/** The room: the last segment of the page's path ("" on `/`). */
function roomFromPath() {
  const seg = location.pathname.split('/').filter(Boolean).pop() || '';
  try {
    return decodeURIComponent(seg);
  } catch {
    return seg;
  }
}

const ui = {
  room: roomFromPath(),
  media: null,
  call: null,
  tiles: new Map(), // owner endpoint id -> tile record
  states: new Map(), // owner endpoint id -> {audioMuted, videoMuted, screen}
  audioEls: new Map(), // mid -> <audio>
  stats: new SlotStats(),
  statsTimer: null,
  owner: false,
  speaker: null, // the bridge's dominant speaker (endpoint id), once announced
};

// For tests and debugging from the console: the call in progress.
window.ringbridge = ui;

function notice(kind, text, code) {
  const el = document.createElement('div');
  el.className = `notice ${kind}`;
  if (code) el.dataset.code = code;
  el.textContent = text;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'dismiss';
  close.title = 'Dismiss';
  close.setAttribute('aria-label', 'Dismiss');
  close.addEventListener('click', () => el.remove());
  el.append(close);
  $('notices').append(el);
  if (kind === 'info') setTimeout(() => el.remove(), 15000);
}

function show(section) {
  for (const id of ['lobby', 'call', 'ended']) $(id).hidden = id !== section;
}

// --- devices ---------------------------------------------------------------

async function fillPickers() {
  const devices = await navigator.mediaDevices.enumerateDevices();
  const fill = (ids, kind, current) => {
    for (const id of ids) {
      const sel = $(id);
      sel.replaceChildren();
      devices.filter((d) => d.kind === kind).forEach((d, i) => {
        const o = document.createElement('option');
        o.value = d.deviceId;
        o.textContent = d.label || `${kind === 'videoinput' ? 'Camera' : 'Microphone'} ${i + 1}`;
        if (d.deviceId === current) o.selected = true;
        sel.append(o);
      });
    }
  };
  const cur = (kind) => {
    const t = ui.media && (kind === 'video' ? ui.media.getVideoTracks()[0] : ui.media.getAudioTracks()[0]);
    return t ? t.getSettings().deviceId : '';
  };
  fill(['camera-select', 'call-camera-select'], 'videoinput', cur('video'));
  fill(['mic-select', 'call-mic-select'], 'audioinput', cur('audio'));
}

async function openMedia() {
  try {
    ui.media = await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: 640, height: 360 } });
  } catch (e) {
    notice('warn', `No camera or microphone (${e.name}): you can still join and watch.`);
    ui.media = new MediaStream();
  }
  $('preview').srcObject = ui.media;
  $('self-video').srcObject = ui.media;
  await fillPickers();
}

async function pickDevice(kind, deviceId) {
  if (!deviceId) return;
  const constraints = kind === 'video'
    ? { video: { deviceId: { exact: deviceId }, width: 640, height: 360 } }
    : { audio: { deviceId: { exact: deviceId } } };
  let track;
  try {
    const s = await navigator.mediaDevices.getUserMedia(constraints);
    track = kind === 'video' ? s.getVideoTracks()[0] : s.getAudioTracks()[0];
  } catch (e) {
    notice('error', `Cannot open that device: ${e.message || e.name}`);
    return;
  }
  if (ui.call && !ui.call.closed) {
    await ui.call.replaceTrack(kind, track);
  } else {
    const old = kind === 'video' ? ui.media.getVideoTracks()[0] : ui.media.getAudioTracks()[0];
    if (old) {
      ui.media.removeTrack(old);
      old.stop();
    }
    ui.media.addTrack(track);
  }
  $('preview').srcObject = ui.media;
  $('self-video').srcObject = ui.media;
  await fillPickers();
}

for (const [id, kind] of [['camera-select', 'video'], ['call-camera-select', 'video'], ['mic-select', 'audio'], ['call-mic-select', 'audio']]) {
  $(id).addEventListener('change', (e) => pickDevice(kind, e.target.value));
}

// --- tiles -----------------------------------------------------------------

function tileFor(owner, name) {
  let t = ui.tiles.get(owner);
  if (!t) {
    const el = $('tile-template').content.firstElementChild.cloneNode(true);
    el.dataset.endpoint = owner;
    const screen = $('tile-template').content.firstElementChild.cloneNode(true);
    screen.classList.add('screen');
    screen.dataset.endpoint = owner;
    screen.dataset.screen = 'true';
    screen.hidden = true;
    screen.querySelector('.moderation').remove();
    t = { el, screen, mid: null, screenMid: null, audioMid: null, name: '' };
    el.querySelector('.mod-mute').addEventListener('click', () => moderate('mute', owner));
    el.querySelector('.mod-remove').addEventListener('click', () => moderate('remove', owner));
    el.querySelector('.moderation').hidden = !ui.owner;
    el.classList.toggle('speaking', owner === ui.speaker);
    $('tiles').append(el, screen);
    ui.tiles.set(owner, t);
  }
  if (name !== undefined && name !== t.name) {
    t.name = name;
    t.el.querySelector('.name').textContent = name || owner;
    t.screen.querySelector('.name').textContent = `${name || owner} (screen)`;
    t.el.querySelector('.avatar').textContent = (name || owner).slice(0, 1).toUpperCase();
  }
  return t;
}

function attach(video, mid) {
  const r = ui.call.receiverFor(mid);
  if (!r) return;
  if (!video.srcObject || video.srcObject.getTracks()[0] !== r.track) {
    video.srcObject = new MediaStream([r.track]);
    video.play().catch(() => {});
  }
}

function onSources(videoMap, audioMap) {
  const owners = new Set();
  const byOwner = new Map();
  for (const s of videoMap.concat(audioMap)) {
    if (!s.owner) continue;
    owners.add(s.owner);
    if (!byOwner.has(s.owner)) byOwner.set(s.owner, []);
    byOwner.get(s.owner).push(s);
  }
  for (const [owner, sources] of byOwner) {
    const name = (sources.find((s) => s.ownerName) || {}).ownerName || '';
    const t = tileFor(owner, name);
    const videos = sources.filter((s) => videoMap.includes(s));
    // The camera is the owner's first video source (`-v0`); others are screens.
    const cam = videos.find((s) => /-v0$/.test(s.source)) || videos[0];
    const screen = videos.find((s) => s !== cam);
    t.mid = cam ? String(cam.mid) : null;
    t.screenMid = screen ? String(screen.mid) : null;
    t.el.dataset.source = cam ? cam.source : '';
    t.el.dataset.mid = t.mid || '';
    if (t.mid) attach(t.el.querySelector('video'), t.mid);
    if (t.screenMid) attach(t.screen.querySelector('video'), t.screenMid);
    const audio = sources.find((s) => audioMap.includes(s));
    t.audioMid = audio ? String(audio.mid) : null;
    applyState(owner);
  }
  for (const [owner, t] of ui.tiles) {
    if (!owners.has(owner)) {
      t.el.remove();
      t.screen.remove();
      ui.tiles.delete(owner);
    }
  }
  $('tiles').dataset.remoteTiles = String(ui.tiles.size);
}

function applyState(owner) {
  const t = ui.tiles.get(owner);
  if (!t) return;
  const s = ui.states.get(owner);
  const videoMuted = s ? s.videoMuted : false;
  const audioMuted = s ? s.audioMuted : false;
  t.el.dataset.videoMuted = String(videoMuted);
  t.el.dataset.audioMuted = String(audioMuted);
  t.el.querySelector('.flags').textContent = [audioMuted ? 'mic off' : '', videoMuted ? 'camera off' : ''].filter(Boolean).join(' · ');
  // Screens show while the owner says it shares, or always for clients that
  // never say (they send no state).
  t.screen.hidden = !t.screenMid || (s ? !s.screen : true);
}

function onState(owner, state) {
  if (owner === null) {
    // Own state changed.
    $('mic-button').setAttribute('aria-pressed', String(state.audioMuted));
    $('mic-button').textContent = state.audioMuted ? 'Unmute mic' : 'Mute mic';
    $('cam-button').setAttribute('aria-pressed', String(state.videoMuted));
    $('cam-button').textContent = state.videoMuted ? 'Start camera' : 'Stop camera';
    $('share-button').setAttribute('aria-pressed', String(state.screen));
    $('share-button').textContent = state.screen ? 'Stop sharing' : 'Share screen';
    $('self-tile').dataset.videoMuted = String(state.videoMuted);
    $('self-tile').querySelector('.flags').textContent = [state.audioMuted ? 'mic off' : '', state.videoMuted ? 'camera off' : '', state.screen ? 'sharing' : ''].filter(Boolean).join(' · ');
    return;
  }
  ui.states.set(owner, state);
  applyState(owner);
}

function onSpeaker(endpoint) {
  ui.speaker = endpoint;
  for (const [owner, t] of ui.tiles) t.el.classList.toggle('speaking', owner === endpoint);
  $('self-tile').classList.toggle('speaking', !!ui.call && endpoint === ui.call.endpoint);
}

async function moderate(action, owner) {
  const t = ui.tiles.get(owner);
  const who = (t && t.name) || owner;
  try {
    if (action === 'mute') {
      await ui.call.moderatorMute(owner);
      notice('info', `You muted ${who}.`);
    } else {
      await ui.call.moderatorRemove(owner);
      notice('info', `You removed ${who} from the meeting.`);
    }
  } catch (e) {
    notice('error', `Could not ${action} ${who}: ${e.message}`);
  }
}

// --- audio slots -------------------------------------------------------------

function playAudioSlots() {
  for (const tr of ui.call.pc.getTransceivers()) {
    if (tr.receiver.track.kind !== 'audio' || ui.audioEls.has(tr.mid)) continue;
    const a = document.createElement('audio');
    a.autoplay = true;
    a.srcObject = new MediaStream([tr.receiver.track]);
    a.dataset.mid = tr.mid;
    document.body.append(a);
    a.play().catch(() => {});
    ui.audioEls.set(tr.mid, a);
  }
}

// --- connection indicator --------------------------------------------------------

async function refreshStats() {
  if (!ui.call || ui.call.closed) return;
  for (const [, t] of ui.tiles) {
    const r = t.mid && ui.call.receiverFor(t.mid);
    if (!r) continue;
    const s = await ui.stats.sample(r);
    const conn = t.el.querySelector('.conn');
    conn.dataset.quality = quality(s);
    conn.querySelector('.conn-text').textContent = describe(s);
    t.el.dataset.framesDecoded = String(s ? s.framesDecoded : 0);
  }
}

// --- join / leave ------------------------------------------------------------------

function currentToken() {
  return $('token-input').value.trim();
}

function showWho() {
  const d = describeToken(currentToken());
  ui.owner = !!(d && d.owner);
  $('who').textContent = d
    ? `You join as ${d.name || 'a guest'}${d.owner ? ' (moderator)' : ''}.`
    : (currentToken() ? 'This does not look like a token.' : '');
  if (d && d.name) $('self-name').textContent = `${d.name} (you)`;
  $('self-avatar').textContent = ((d && d.name) || 'You').slice(0, 1).toUpperCase();
}

async function join(ev) {
  ev.preventDefault();
  const room = ui.room || $('room-input').value.trim();
  const token = currentToken();
  if (!room) {
    notice('error', 'Enter a room name.');
    return;
  }
  if (!token) {
    notice('error', 'Paste a token first: you get one from whoever runs the meeting.');
    return;
  }
  if (!ui.room) {
    // Go to the room's own address (relative, so a path prefix is kept); the
    // token stays in the fragment.
    location.href = `${encodeURIComponent(room)}#jwt=${encodeURIComponent(token)}`;
    return;
  }
  $('join-button').disabled = true;
  showWho();
  await ui.mediaReady;
  ui.call = new Call(room, token, ui.media, {
    sources: onSources,
    state: onState,
    notice,
    ended: (text) => ended(text),
    connection: (s) => {
      $('conn-state').dataset.state = s;
      $('conn-state').textContent = s;
    },
    speaker: onSpeaker,
    self: (id) => {
      $('self-tile').dataset.endpoint = id;
    },
  });
  try {
    await ui.call.join();
  } catch (e) {
    ui.call.teardown();
    ui.call = null;
    $('join-button').disabled = false;
    notice('error', e.message || String(e));
    return;
  }
  show('call');
  playAudioSlots();
  ui.statsTimer = setInterval(refreshStats, 1000);
}

function ended(text) {
  clearInterval(ui.statsTimer);
  for (const [, t] of ui.tiles) {
    t.el.remove();
    t.screen.remove();
  }
  ui.tiles.clear();
  ui.speaker = null;
  $('self-tile').classList.remove('speaking');
  for (const [, a] of ui.audioEls) a.remove();
  ui.audioEls.clear();
  $('ended-text').textContent = text;
  document.body.dataset.ended = 'true';
  show('ended');
}

$('join-form').addEventListener('submit', join);
$('token-input').addEventListener('input', showWho);
$('mic-button').addEventListener('click', () => ui.call && ui.call.setAudioMuted(!ui.call.state.audioMuted));
$('cam-button').addEventListener('click', () => ui.call && ui.call.setVideoMuted(!ui.call.state.videoMuted));
$('share-button').addEventListener('click', async () => {
  if (!ui.call) return;
  if (ui.call.state.screen) {
    await ui.call.stopShare();
    return;
  }
  try {
    await ui.call.share();
  } catch (e) {
    notice('error', `Screen sharing did not start: ${e.message || e.name}`);
  }
});
$('leave-button').addEventListener('click', async () => {
  if (!ui.call) return;
  await ui.call.leave();
  ended('You left the meeting.');
});
$('rejoin-button').addEventListener('click', () => location.reload());
window.addEventListener('pagehide', () => {
  if (ui.call && !ui.call.closed) ui.call.leave();
});

// --- start -------------------------------------------------------------------------

$('room-title').textContent = ui.room ? `Room: ${ui.room}` : 'Choose a room';
$('room-field').hidden = !!ui.room;
$('token-input').value = tokenFromFragment(location.hash);
showWho();
ui.mediaReady = openMedia();
